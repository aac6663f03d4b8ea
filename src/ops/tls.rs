//! rustls client configuration for every `mqtts://` connection (the northbound broker's
//! `[mqtt]`, the LoRa network server's `[lora.chirpstack]`): the CA file or the system
//! roots, and an optional client certificate for mutual TLS. Uses the ring provider
//! explicitly. Reads files: call it off the async workers (`spawn_blocking`).

use crate::ops::pem::{PemError, read_certs, read_key};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] PemError),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no usable root certificates found on this system; set {0}.ca_file")]
    NoRoots(&'static str),
    #[error("TLS setup task failed: {0}")]
    Task(String),
}

/// The files of one TLS client, as `ca_file`, `cert_file` and `key_file` of a config
/// section name them (already resolved against the file that set them).
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    /// The config section, for messages: `mqtt`, `lora.chirpstack`.
    pub section: &'static str,
    pub ca_file: Option<&'a Path>,
    /// Mutual TLS: certificate chain and private key (validation requires both or none).
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
}

pub fn client_config(files: ClientFiles<'_>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match files.ca_file {
        Some(ca) => {
            for c in read_certs(ca)? {
                roots.add(c)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots(files.section));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match (files.cert_file, files.key_file) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
