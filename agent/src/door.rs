//! The token door (`warrant.v1.TokenDoor`): sessions let in by a signed grant
//! token instead of a grant issued on this host.
//!
//! Every check runs here, offline, before anything is created: the token's form,
//! its signature against the trusted keys (`grant_public_key`, read at each use so
//! a rotated file takes effect at once), its validity against this host's clock,
//! its host pattern against this host's name, for a caller other than root that
//! its subject names the caller, the policy text against the signed digest, and
//! replay (the ledger). Each refusal is one line, goes back to the caller as
//! "token refused: …" and is an audited `token_refused` event.
//!
//! The door is served on the agent's socket and, with `--door-socket`, on a
//! socket every local user may open: the token is the authority there, and the
//! door offers nothing else (no watching, no grant ids, no kills).
//!
//! What a local user can make the root-owned audit log hold is bounded: a token
//! over [`MAX_TOKEN_BYTES`] or a policy over [`MAX_POLICY_BYTES`] is refused before
//! any check; a refusal's record keeps at most [`RECORD_FIELD_MAX`] bytes of each
//! field and [`RECORD_ARGS_MAX`] arguments (a cut field says "truncated"); at most
//! [`REFUSALS_PER_WINDOW`] refusals per caller uid are recorded per
//! [`REFUSAL_WINDOW`], and the rest are counted in one record at the window's end.
//! The door's own socket takes messages of at most [`DOOR_MAX_MESSAGE`] bytes,
//! [`DOOR_MAX_CONNECTIONS`] connections at once, and closes a connection that sends
//! nothing within [`DOOR_SILENCE`] or is older than [`DOOR_CONNECTION_AGE`].

use std::{
    collections::HashMap,
    ffi::CStr,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::net::{UnixListener, UnixStream};
use tonic::{Request, Response, Status, service::interceptor::InterceptedService};
use tracing::{info, warn};
use warrant_proto::{
    token::{self, TokenError, TrustedKeys},
    v1::{
        self as pb, GrantToken,
        token_door_server::{TokenDoor, TokenDoorServer},
    },
};

use crate::peer::{Gate, PeerInfo};
use crate::{
    clock,
    host::{Host, HostError},
    ids,
    registry::GrantError,
    token_ledger::Ledger,
};

/// Longest token a request may carry (bytes); a longer one is refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest policy text a request may carry (bytes).
pub const MAX_POLICY_BYTES: usize = 128 * 1024;
/// Most bytes of one string field a refusal's record keeps.
pub const RECORD_FIELD_MAX: usize = 256;
/// Most command arguments a refusal's record keeps.
pub const RECORD_ARGS_MAX: usize = 16;
/// Refusals recorded per caller uid per [`REFUSAL_WINDOW`]; the rest are counted.
pub const REFUSALS_PER_WINDOW: u32 = 10;
/// The window of [`REFUSALS_PER_WINDOW`].
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// Biggest message the door's socket decodes.
pub const DOOR_MAX_MESSAGE: usize = 256 * 1024;
/// Connections the door's socket holds open at once.
pub const DOOR_MAX_CONNECTIONS: usize = 64;
/// How long a new connection to the door's socket may stay silent.
pub const DOOR_SILENCE: Duration = Duration::from_secs(5);
/// How long a connection to the door's socket may last (then 5 s of grace).
pub const DOOR_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// The door service.
#[derive(Clone)]
pub struct Door {
    host: Arc<Host>,
    /// `grant_public_key`; `None` refuses every token.
    keys_file: Option<PathBuf>,
    /// Redeemed tokens. Held across check, grant and record, so two requests with
    /// one token cannot both get in.
    ledger: Arc<tokio::sync::Mutex<Ledger>>,
    /// Refusals recorded and not recorded per caller uid, in the current window.
    refusals: Arc<Mutex<HashMap<u32, Window>>>,
}

/// One caller uid's refusals in the current window.
struct Window {
    started: Instant,
    recorded: u32,
    unrecorded: u64,
}

/// Why a request was refused: a token reason (audited) or another failure.
enum Refusal {
    Token(TokenError),
    Other(Status),
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

impl Door {
    /// Checks the key file once at start (a bad file is a config error, not a
    /// surprise at the first login) and loads the ledger.
    pub fn new(host: Arc<Host>, keys_file: Option<PathBuf>, state_dir: &Path) -> Result<Self> {
        if let Some(path) = &keys_file {
            let keys = read_keys(path).map_err(|e| anyhow::anyhow!("invalid grant_public_key: {e}"))?;
            info!(file = %path.display(), keys = ?keys.ids().collect::<Vec<_>>(), "grant tokens are verified against these keys");
        }
        let ledger = Ledger::load(state_dir.join("tokens.json"))?;
        Ok(Self {
            host,
            keys_file,
            ledger: Arc::new(tokio::sync::Mutex::new(ledger)),
            refusals: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The service behind `gate`, which refuses callers from inside a session.
    pub fn server(&self, gate: Gate) -> InterceptedService<TokenDoorServer<Self>, Gate> {
        InterceptedService::new(TokenDoorServer::new(self.clone()).max_decoding_message_size(DOOR_MAX_MESSAGE), gate)
    }

    /// All checks, then the grant: its id (`g-…`).
    async fn admit(
        &self,
        r: &TokenRequest<'_>,
        caller: (u32, u32),
        claims: &mut Option<GrantToken>,
    ) -> Result<String, Refusal> {
        let keys = match &self.keys_file {
            Some(path) => read_keys(path).map_err(|e| {
                warn!("{e}");
                Refusal::Other(Status::internal(format!("cannot read the grant public keys: {e}")))
            })?,
            None => return Err(TokenError::NoTrustedKeys.into()),
        };
        let unverified = token::decode(r.token)?;
        *claims = Some(unverified.token.clone());
        let t = unverified.verify_signature(&keys)?;
        token::check_validity(&t, clock::wall_ns(), self.host.host_name())?;
        if caller.0 != 0 {
            let user = user_name(caller.0).unwrap_or_else(|| format!("uid {}", caller.0));
            let name = token::subject_parts(&t.subject).map(|(_, n)| n).unwrap_or_default();
            if name != user {
                return Err(TokenError::WrongSubject { subject: t.subject.clone(), user }.into());
            }
        }
        let policy = match (t.policy_digest.is_empty(), r.policy.trim().is_empty()) {
            (true, true) => None,
            (true, false) | (false, true) => return Err(TokenError::PolicyAltered.into()),
            (false, false) => {
                let p = warrant_policy::Policy::from_yaml(r.policy, "token policy")
                    .map_err(|_| TokenError::PolicyAltered)?;
                if p.digest().to_string() != t.policy_digest {
                    return Err(TokenError::PolicyAltered.into());
                }
                Some(p)
            }
        };
        let id = ids::parse_grant(&t.grant).ok_or(TokenError::Malformed("grant id".into()))?;
        let grant = {
            let mut ledger = self.ledger.lock().await;
            if ledger.contains(&t.grant) || self.host.has_grant(id) {
                return Err(TokenError::Replayed.into());
            }
            let grant = self
                .host
                .issue_token_grant(&t, policy.as_ref().map(|p| (p, r.policy)))
                .await
                .map_err(|e| match e {
                    // Limits a signed token broke are refusals of the token, on the record.
                    HostError::Grant(g @ (GrantError::Policy(_) | GrantError::Ttl { .. } | GrantError::NoSubject)) => {
                        Refusal::Token(TokenError::Unacceptable(g.to_string()))
                    }
                    e => Refusal::Other(e.into()),
                })?;
            // Burnt once its grant exists, whatever happens to the session next.
            if let Err(e) = ledger.record(&t.grant, t.not_after_unix_ns, clock::wall_ns()) {
                warn!("{e:#}");
                return Err(Refusal::Other(Status::internal(format!("cannot record the token as used: {e:#}"))));
            }
            grant
        };
        Ok(ids::grant(grant.id))
    }

    /// Lets a token in: every check of [`Door::admit`], each refusal on the record
    /// as a `token_refused` event and returned as "token refused: …". The grant's
    /// id on success; the session is the caller's to open.
    pub async fn let_in(&self, r: &TokenRequest<'_>, caller: (u32, u32)) -> Result<String, Status> {
        let too_big = if r.token.len() > MAX_TOKEN_BYTES {
            Some(format!("the token is {} bytes, over the {MAX_TOKEN_BYTES}-byte limit", r.token.len()))
        } else if r.policy.len() > MAX_POLICY_BYTES {
            Some(format!("the policy is {} bytes, over the {MAX_POLICY_BYTES}-byte limit", r.policy.len()))
        } else {
            None
        };
        if let Some(why) = too_big {
            self.record_refusal(&why, r, caller, None).await;
            return Err(Status::invalid_argument(format!("token refused: {why}")));
        }
        let mut claims = None;
        match self.admit(r, caller, &mut claims).await {
            Ok(grant) => Ok(grant),
            Err(Refusal::Other(status)) => Err(status),
            Err(Refusal::Token(e)) => {
                let reason = e.to_string();
                self.record_refusal(&reason, r, caller, claims.as_ref()).await;
                Err(Status::permission_denied(format!("token refused: {reason}")))
            }
        }
    }

    /// Records a refusal as a `token_refused` event, its fields cut to size, unless
    /// the caller's uid is over its [`REFUSALS_PER_WINDOW`]: then it is counted, and
    /// the count recorded once when the window ends.
    async fn record_refusal(&self, reason: &str, r: &TokenRequest<'_>, caller: (u32, u32), claims: Option<&GrantToken>) {
        if !self.may_record(caller.0) {
            return;
        }
        info!(uid = caller.0, pid = caller.1, how = %cut(r.how), "token refused: {}", cut(reason));
        let mut command: Vec<String> = r.command.iter().take(RECORD_ARGS_MAX).map(|a| cut(a)).collect();
        if r.command.len() > RECORD_ARGS_MAX {
            command.push(format!("… (truncated: {} more arguments)", r.command.len() - RECORD_ARGS_MAX));
        }
        let refused = pb::TokenRefused {
            reason: cut(reason),
            caller_uid: caller.0,
            caller_pid: caller.1,
            how: cut(r.how),
            command,
            ..Default::default()
        };
        let claims = claims.map(|t| GrantToken {
            key_id: cut(&t.key_id),
            host: cut(&t.host),
            grant: cut(&t.grant),
            subject: cut(&t.subject),
            ..GrantToken::default()
        });
        self.host.token_refused(refused, claims.as_ref()).await;
    }

    /// Whether `uid`'s next refusal is recorded; when it is not, it is counted and
    /// the first one over the limit schedules the record of the count.
    fn may_record(&self, uid: u32) -> bool {
        let now = Instant::now();
        let mut all = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, w| w.unrecorded > 0 || now.duration_since(w.started) < REFUSAL_WINDOW);
        let w = all.entry(uid).or_insert(Window { started: now, recorded: 0, unrecorded: 0 });
        if w.recorded < REFUSALS_PER_WINDOW {
            w.recorded += 1;
            return true;
        }
        w.unrecorded += 1;
        if w.unrecorded == 1 {
            let (host, refusals) = (Arc::clone(&self.host), Arc::clone(&self.refusals));
            let at = tokio::time::Instant::from_std(w.started + REFUSAL_WINDOW);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let n = refusals.lock().unwrap_or_else(PoisonError::into_inner).remove(&uid).map_or(0, |w| w.unrecorded);
                warn!(uid, "{n} more token refusals of this caller were not recorded (rate limit)");
                let refused = pb::TokenRefused {
                    reason: format!(
                        "{n} more token refusals from uid {uid} within {}s were not recorded (at most {REFUSALS_PER_WINDOW} \
                         are recorded per caller uid per {}s)",
                        REFUSAL_WINDOW.as_secs(),
                        REFUSAL_WINDOW.as_secs()
                    ),
                    caller_uid: uid,
                    ..Default::default()
                };
                host.token_refused(refused, None).await;
            });
        }
        false
    }
}

/// `s` cut to [`RECORD_FIELD_MAX`] bytes (at a character boundary), saying so.
fn cut(s: &str) -> String {
    if s.len() <= RECORD_FIELD_MAX {
        return s.to_owned();
    }
    let mut end = RECORD_FIELD_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated, {} bytes)", &s[..end], s.len())
}

/// What a token request carries, from the door's RPC or the launch socket.
pub struct TokenRequest<'a> {
    /// `wgt1.…`
    pub token: &'a str,
    /// The policy text the token's digest binds.
    pub policy: &'a str,
    /// "exec" or "login".
    pub how: &'a str,
    /// The command, for the record of a refusal.
    pub command: &'a [String],
}

#[tonic::async_trait]
impl TokenDoor for Door {
    /// Tags the caller itself: root only, recorded as unconfined whatever the
    /// request claims. A confined session is started through the launch socket
    /// (`warrant exec --token`, `warrant login`).
    async fn start_session_with_token(
        &self,
        req: Request<pb::StartSessionWithTokenRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let peer = PeerInfo::of_request(&req)?;
        let pid = peer.pid;
        if pid == 0 {
            return Err(Status::failed_precondition(
                "cannot tell the calling process from the socket",
            ));
        }
        if peer.uid != 0 {
            return Err(Status::permission_denied(format!(
                "tagging the calling process needs root (caller uid {}): a confined session is started through the launch \
                 socket, as `warrant exec --token` does",
                peer.uid
            )));
        }
        let caller = (peer.uid, pid);
        let r = req.into_inner();
        let how = if r.how == "login" { "login" } else { "exec" };
        let ask = TokenRequest {
            token: &r.token,
            policy: &r.policy,
            how,
            command: &r.command,
        };
        let grant = self.let_in(&ask, caller).await?;
        let s = self
            .host
            .start_session(&grant, &[pid], r.command.clone(), how, caller)
            .await?;
        Ok(Response::new(s))
    }
}

fn read_keys(path: &Path) -> Result<TrustedKeys> {
    let text = fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    TrustedKeys::parse(&text).with_context(|| format!("invalid key file {}", path.display()))
}

/// The login name of `uid` (through NSS, so directory users count too).
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data; zeroed is a valid (empty) value for it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe { libc::getpwuid_r(uid, &raw mut pw, buf.as_mut_ptr().cast(), buf.len(), &raw mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
    Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned())
}

/// Binds the door socket, open to every local user (mode 0666); refuses to take
/// over a socket another agent is serving.
pub async fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("failed to create socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!("another warrant-agent is already serving {}", path.display());
        }
        fs::remove_file(path).with_context(|| format!("failed to remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("failed to bind the door socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))
        .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    Ok(listener)
}

/// Serves only the door on `listener` until the task is aborted.
pub fn serve(listener: UnixListener, door: &Door, gate: Gate) -> tokio::task::JoinHandle<()> {
    let server = tonic::transport::Server::builder()
        .max_connection_age(DOOR_CONNECTION_AGE)
        .max_connection_age_grace(Duration::from_secs(5))
        .add_service(door.server(gate))
        .serve_with_incoming(crate::peer::incoming_limited(listener, "door", DOOR_MAX_CONNECTIONS, DOOR_SILENCE));
    tokio::spawn(async move {
        if let Err(e) = server.await {
            warn!("the door socket stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_and_say_so() {
        assert_eq!(cut("exec"), "exec");
        let long = "é".repeat(200);
        let c = cut(&long);
        assert!(c.len() < RECORD_FIELD_MAX + 40 && c.ends_with("… (truncated, 400 bytes)"), "{c}");
    }

    #[test]
    fn root_has_a_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_name(4_000_000_000), None);
    }
}
