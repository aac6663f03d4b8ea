//! One SNMP agent session: the `async-snmp` client built from an agent's configuration,
//! its errors sorted into what the daemon reports (SPEC §11: a timeout, an authentication
//! failure, an agent's refusal naming its SNMP error), every exchange bounded.
//!
//! The crate does the protocol work: request ids (a reply with another id is dropped),
//! retries after `timeout_ms`, v3 engine discovery and time-window sync (a `notInTimeWindow`
//! report resynchronizes and the request is resent), USM digests and AES-128 privacy.
//! We add an outer deadline per exchange, so no agent can hold the task longer than
//! `timeout_ms × (retries + 1)` plus a margin whatever it sends.

use crate::config::snmp::{AuthProto, SnmpAgentCfg, SnmpCreds};
use async_snmp::v3::ReportStatus;
use async_snmp::{
    Auth, AuthProtocol, Client, Oid, PrivProtocol, Retry, UdpHandle, UsmConfig, Value, VarBind,
};
use std::time::Duration;

/// Added to the crate's own timeouts for the outer deadline of one exchange.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// Why an exchange with an agent failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SnmpError {
    /// No valid answer within `timeout_ms` after every retry.
    #[error("SNMP timeout")]
    Timeout,
    /// v3: wrong digest, unknown user, undecryptable, or unsupported security level.
    #[error("SNMP authentication failed")]
    Auth,
    /// The agent answered with an error status (e.g. `notWritable`).
    #[error("{status}")]
    Refused { status: String },
    /// Name resolution, socket, or a response the crate could not accept.
    #[error("SNMP error: {0}")]
    Other(String),
}

impl SnmpError {
    fn of(e: &async_snmp::Error) -> SnmpError {
        use async_snmp::Error as E;
        match e.exchange_source() {
            E::Timeout { .. } => SnmpError::Timeout,
            E::Auth { .. } => SnmpError::Auth,
            E::Report { status, .. } => match **status {
                ReportStatus::WrongDigest { .. }
                | ReportStatus::UnknownUserName { .. }
                | ReportStatus::DecryptionError { .. }
                | ReportStatus::UnsupportedSecurityLevel { .. } => SnmpError::Auth,
                _ => SnmpError::Other(e.to_string()),
            },
            E::Snmp { status, .. } => SnmpError::Refused {
                status: status.to_string(),
            },
            other => SnmpError::Other(other.to_string()),
        }
    }
}

/// The crate's authentication settings for an agent's credentials.
pub fn auth(creds: &SnmpCreds) -> Result<Auth, SnmpError> {
    match creds {
        SnmpCreds::V2c { community } => Ok(Auth::v2c(community.0.as_bytes().to_vec())),
        SnmpCreds::V3 {
            user,
            context,
            auth,
            auth_key,
            priv_key,
        } => {
            let proto = match auth {
                AuthProto::Sha1 => AuthProtocol::Sha1,
                AuthProto::Sha256 => AuthProtocol::Sha256,
            };
            UsmConfig::new(user.as_bytes().to_vec())
                .context_name(context.as_bytes().to_vec())
                .auth_priv(proto, &auth_key.0, PrivProtocol::Aes128, &priv_key.0)
                .map(Auth::from)
                .map_err(|e| SnmpError::Other(format!("v3 keys: {e}")))
        }
    }
}

/// A session with one agent (cheap to clone: one socket).
#[derive(Clone)]
pub struct Session {
    client: Client<UdpHandle>,
    /// v3: the same user without authentication, asked after a timeout (see [`Session::v3_diagnosis`]).
    diagnosis: Option<Client<UdpHandle>>,
    deadline: Duration,
}

impl Session {
    /// Opens the UDP socket (resolving the agent's name once).
    pub async fn open(cfg: &SnmpAgentCfg) -> Result<Session, SnmpError> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let retry = Retry::fixed(cfg.retries, Duration::ZERO)
            .map_err(|e| SnmpError::Other(e.to_string()))?;
        let client = Client::builder(cfg.address.as_str(), auth(&cfg.creds)?)
            .request_timeout(timeout)
            .construction_timeout(timeout.max(Duration::from_secs(1)))
            .retry(retry)
            .max_oids_per_request(cfg.max_oids)
            .connect()
            .await
            .map_err(|e| SnmpError::of(&e))?;
        let diagnosis = match &cfg.creds {
            SnmpCreds::V3 { user, .. } => {
                let auth = Auth::from(UsmConfig::new(user.as_bytes().to_vec()));
                Client::builder(cfg.address.as_str(), auth)
                    .request_timeout(timeout)
                    .construction_timeout(timeout.max(Duration::from_secs(1)))
                    .retry(Retry::none())
                    .connect()
                    .await
                    .ok()
            }
            SnmpCreds::V2c { .. } => None,
        };
        // v3 discovery and a time-window resync each add an exchange to the first request.
        let deadline = timeout * (cfg.retries + 1) * 3 + DEADLINE_MARGIN;
        Ok(Session {
            client,
            diagnosis,
            deadline,
        })
    }

    /// A v3 agent drops a request whose digest or keys are wrong and answers with an
    /// unauthenticated report, which the client (rightly: anyone could send one) does
    /// not take as an answer, so a wrong key looks like a timeout. After a timeout we ask
    /// the agent once without authentication: if it answers (any report), it is alive and
    /// refuses our credentials: "SNMP authentication failed".
    async fn v3_diagnosis(&self, e: SnmpError) -> SnmpError {
        let Some(plain) = &self.diagnosis else {
            return e;
        };
        if e != SnmpError::Timeout {
            return e;
        }
        let probe = async_snmp::oid!(1, 3, 6, 1, 2, 1, 1, 3, 0);
        match tokio::time::timeout(self.deadline, plain.get(&probe)).await {
            Ok(Ok(_)) => SnmpError::Auth,
            Ok(Err(d)) if SnmpError::of(&d) != SnmpError::Timeout => SnmpError::Auth,
            _ => e,
        }
    }

    async fn bounded<T>(
        &self,
        f: impl Future<Output = async_snmp::Result<T>>,
    ) -> Result<T, SnmpError> {
        match tokio::time::timeout(self.deadline, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(SnmpError::of(&e)),
            Err(_) => Err(SnmpError::Timeout),
        }
    }

    /// One GET of `oids` (the caller keeps it within `max_oids`): the value of each OID in
    /// request order (`noSuchInstance` and friends are values here).
    pub async fn get(&self, oids: &[Oid]) -> Result<Vec<Value>, SnmpError> {
        match self.bounded(self.client.get_many(oids)).await {
            Ok(r) => Ok(in_order(oids, r.varbinds)),
            Err(e) => Err(self.v3_diagnosis(e).await),
        }
    }

    /// One SET; the value the agent answered with.
    pub async fn set(&self, oid: &Oid, value: Value) -> Result<Value, SnmpError> {
        let r = match self.bounded(self.client.set(oid, value)).await {
            Ok(r) => r,
            Err(e) => return Err(self.v3_diagnosis(e).await),
        };
        Ok(in_order(std::slice::from_ref(oid), r.varbinds)
            .pop()
            .unwrap_or(Value::Null))
    }
}

/// The value bound to each requested OID, in request order; a binding missing from the
/// response (a misbehaving agent) reads as `noSuchInstance`.
fn in_order(oids: &[Oid], mut varbinds: Vec<VarBind>) -> Vec<Value> {
    if varbinds.len() == oids.len() && varbinds.iter().zip(oids).all(|(v, o)| &v.oid == o) {
        return varbinds.into_iter().map(|v| v.value).collect();
    }
    oids.iter()
        .map(|o| {
            varbinds
                .iter()
                .position(|v| &v.oid == o)
                .map(|i| varbinds.swap_remove(i).value)
                .unwrap_or(Value::NoSuchInstance)
        })
        .collect()
}
