//! rustls client configuration for `mqtts://`: the CA file or the system roots, and an
//! optional client certificate for mutual TLS. Uses the ring provider explicitly.

use crate::config::MqttCfg;
use crate::ops::pem::{PemError, read_certs, read_key};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] PemError),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no usable root certificates found on this system; set mqtt.ca_file")]
    NoRoots,
    #[error("TLS setup task failed: {0}")]
    Task(String),
}

pub fn client_config(cfg: &MqttCfg) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
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
                return Err(TlsError::NoRoots);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
