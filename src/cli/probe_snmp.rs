//! `polegate probe snmp` (SPEC §1, §11): the technician's GET of any OIDs on an agent,
//! with the daemon's own session (`southbound::snmp::Session`: the same credentials,
//! timeout, retries, v3 discovery and error wording), so what the probe shows is what the
//! daemon would read. Credentials come from files, as in the configuration.
//!
//! Exit codes: 0 read ok (a `noSuchInstance` is a value, printed as such); 2 usage
//! error; 3 the agent did not answer, refused us, or could not be reached.

use super::exit::{EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::config::ocpp::Secret;
use crate::config::snmp::{AuthProto, DEFAULT_MAX_OIDS, SNMP_PORT, SnmpAgentCfg, SnmpCreds};
use crate::southbound::snmp::{Session, resolve_oid};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("creds").required(true).args(["community_file", "user"])))]
pub struct SnmpProbe {
    /// The agent, HOST or HOST:PORT (port 161 when absent).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub agent: String,
    /// v2c: the file holding the community.
    #[arg(long, value_name = "F")]
    pub community_file: Option<PathBuf>,
    /// v3 (authPriv): the USM user.
    #[arg(long, value_name = "U", requires_all = ["auth", "auth_key_file", "privacy", "priv_key_file"])]
    pub user: Option<String>,
    /// v3 authentication: sha1 or sha256.
    #[arg(long, value_name = "A", value_parser = ["sha1", "sha256"])]
    pub auth: Option<String>,
    /// v3: the file holding the authentication passphrase.
    #[arg(long, value_name = "F")]
    pub auth_key_file: Option<PathBuf>,
    /// v3 privacy: aes128.
    #[arg(long, value_name = "P", value_parser = ["aes128"])]
    pub privacy: Option<String>,
    /// v3: the file holding the privacy passphrase.
    #[arg(long, value_name = "F")]
    pub priv_key_file: Option<PathBuf>,
    /// v3 context name (default empty).
    #[arg(long, default_value = "")]
    pub context: String,
    /// An OID to read, dotted (repeat for several: one GET carries them).
    #[arg(long = "oid", value_name = "OID", required = true)]
    pub oids: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
}

fn secret(path: &Path, what: &str) -> Result<Secret, String> {
    std::fs::read_to_string(path)
        .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}

fn agent_cfg(args: &SnmpProbe) -> Result<SnmpAgentCfg, String> {
    let (host, port) = crate::config::split_host_port(&args.agent, Some(SNMP_PORT))
        .ok_or_else(|| format!("--agent '{}' is not HOST or HOST:PORT", args.agent))?;
    let creds = match (&args.community_file, &args.user) {
        (Some(f), None) => SnmpCreds::V2c {
            community: secret(f, "--community-file")?,
        },
        (None, Some(user)) => {
            let file = |f: &Option<PathBuf>, what: &str| {
                f.as_deref()
                    .ok_or_else(|| format!("{what} is required with --user"))
                    .and_then(|f| secret(f, what))
            };
            SnmpCreds::V3 {
                user: user.clone(),
                context: args.context.clone(),
                auth: match args.auth.as_deref() {
                    Some("sha1") => AuthProto::Sha1,
                    _ => AuthProto::Sha256,
                },
                auth_key: file(&args.auth_key_file, "--auth-key-file")?,
                priv_key: file(&args.priv_key_file, "--priv-key-file")?,
            }
        }
        _ => return Err("give --community-file (v2c) or --user (v3), not both".into()),
    };
    Ok(SnmpAgentCfg {
        address: format!("{host}:{port}"),
        creds,
        timeout_ms: args.timeout_ms.max(1),
        retries: args.retries.min(10),
        max_oids: DEFAULT_MAX_OIDS,
    })
}

pub fn snmp(args: &SnmpProbe) -> i32 {
    let plan = agent_cfg(args).and_then(|cfg| {
        let oids = args
            .oids
            .iter()
            .map(|o| resolve_oid(o, None).map_err(|e| format!("--oid {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((cfg, oids))
    });
    let (cfg, oids) = match plan {
        Ok(p) => p,
        Err(e) => {
            eprintln!("polegate probe snmp: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(rt) = super::runtime() else {
        return EXIT_RUNTIME;
    };
    let result = rt.block_on(async {
        let session = Session::open(&cfg).await?;
        let mut values = Vec::new();
        for chunk in oids.chunks(cfg.max_oids) {
            values.extend(session.get(chunk).await?);
        }
        Ok::<_, crate::southbound::snmp::SnmpError>(values)
    });
    match result {
        Ok(values) => {
            for (oid, v) in oids.iter().zip(values) {
                println!("{oid} = {} {v}", v.kind());
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("polegate probe snmp: {}: {e}", cfg.address);
            EXIT_RUNTIME
        }
    }
}
