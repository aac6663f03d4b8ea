//! PEM certificate chains and private keys from files, for every TLS endpoint (the MQTT
//! client's `mqtts://`, the OCPP listener's `wss://`).

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn pem_err(path: &Path, what: impl Into<String>) -> PemError {
    PemError::Pem {
        path: path.display().to_string(),
        what: what.into(),
    }
}

/// Every certificate of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let data = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| pem_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let data = read(path)?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| pem_err(path, e.to_string()))?
        .ok_or_else(|| pem_err(path, "no PEM private key found"))
}
