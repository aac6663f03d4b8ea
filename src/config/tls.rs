//! `ca_file`, `cert_file` and `key_file` of every section that connects with `mqtts://`
//! (`[mqtt]`, `[lora.chirpstack]`): one set of rules, so both sections read and refuse
//! the same things. Paths resolve against the file that set them; the files themselves
//! are read when connecting (`ops::tls`), so a renewed certificate is picked up on the
//! next connect.

use super::ctx::{Ctx, resolve};
use std::path::PathBuf;

/// The TLS files of one section, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Checks and resolves the TLS keys of `section`. `tls`: the url is `mqtts://`;
/// `url_ok`: the url parsed (no second complaint about a url already reported).
pub(super) fn tls_files(
    cx: &mut Ctx<'_>,
    section: &str,
    tls: bool,
    url_ok: bool,
    [ca, cert, key]: [Option<String>; 3],
) -> TlsFiles {
    let file_key = |key: &str, v: Option<String>| {
        v.map(|f| resolve(&cx.merged.origin_of(&format!("{section}.{key}")), &f))
    };
    let files = TlsFiles {
        ca_file: file_key("ca_file", ca),
        cert_file: file_key("cert_file", cert),
        key_file: file_key("key_file", key),
    };
    if let Some(k) = &files.key_file {
        cx.secret(&format!("{section}.key_file"), k);
    }
    match (&files.cert_file, &files.key_file) {
        (Some(_), None) => cx.err(
            &format!("{section}.cert_file"),
            "needs key_file too (mutual TLS takes both)",
        ),
        (None, Some(_)) => cx.err(
            &format!("{section}.key_file"),
            "needs cert_file too (mutual TLS takes both)",
        ),
        _ => {}
    }
    if !tls && url_ok {
        for (key, set) in [
            ("ca_file", &files.ca_file),
            ("cert_file", &files.cert_file),
            ("key_file", &files.key_file),
        ] {
            if set.is_some() {
                cx.err(
                    &format!("{section}.{key}"),
                    "applies to TLS only; use an mqtts:// url",
                );
            }
        }
    }
    files
}
