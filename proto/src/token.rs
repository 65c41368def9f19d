//! Signed grant tokens: the proof of approval a host checks offline.
//!
//! A token is a [`GrantToken`] (token.proto) signed with ed25519 and written as
//! `wgt1.<base64url(token bytes)>.<base64url(signature)>`. The signature covers
//! [`DOMAIN`] followed by exactly the bytes carried, so a verifier checks what it
//! received, never a re-encoding, and a signature made for anything else (another
//! format, another protocol using the same key) can never pass as a token's.
//!
//! Everything a host needs to decide is here except the policy digest, which
//! needs the policy parser (`warrant-policy`); the agent checks that itself and
//! reports it with [`TokenError::PolicyAltered`]. The collector signs with
//! [`SecretKey::sign`]; until it does, `warrant token sign` does, for development
//! and tests.
//!
//! Keys are text, one per line: `wpk1.<base64url(32 bytes)>` (public) and
//! `wsk1.<base64url(32-byte seed)>` (secret). A key's id is `k-` and the first 16
//! hex digits of sha256 of the public key, so ids cannot be chosen or collide by
//! accident. A trusted-keys file may hold several public keys (rotation).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::v1::GrantToken;

/// What a token's signature covers before the token bytes.
pub const DOMAIN: &[u8] = b"warrant grant token v1\0";
/// Prefix of an encoded token.
pub const TOKEN_PREFIX: &str = "wgt1";
/// Prefix of a public key's text form.
pub const PUBLIC_PREFIX: &str = "wpk1";
/// Prefix of a secret key's text form.
pub const SECRET_PREFIX: &str = "wsk1";
/// The line in a token file after which the policy text follows verbatim.
pub const POLICY_MARKER: &str = "--- policy";
/// How far a host's clock may lag the signer's: a token this close to its
/// not-before is accepted (clocks of hosts and collector are never exactly equal).
pub const CLOCK_SKEW_NS: i64 = 30_000_000_000;
/// Largest encoded token accepted, to keep a hostile input cheap to refuse.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token is refused. Each message is one line, a reason that follows
/// "token refused: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token presented")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which this host does not trust")]
    UnknownKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("expired {0} ago")]
    Expired(String),
    #[error("not valid yet: starts in {0}")]
    NotYetValid(String),
    #[error("for host {pattern}, this is {host}")]
    WrongHost { pattern: String, host: String },
    #[error("for {subject}, presented by user {user}")]
    WrongSubject { subject: String, user: String },
    #[error("already used (replay)")]
    Replayed,
    #[error("altered: policy does not match its digest")]
    PolicyAltered,
    #[error("no grant public key configured on this host (grant_public_key)")]
    NoTrustedKeys,
    /// A well-signed token this host will not honour (its lifetime exceeds the
    /// policy's or the host's max_ttl, …); the message says which limit.
    #[error("{0}")]
    Unacceptable(String),
}

/// Why a key or token file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no public key in the file")]
    Empty,
    #[error("invalid secret key: {0}")]
    Secret(String),
    #[error("invalid token file: {0}")]
    TokenFile(String),
}

/// An ed25519 public key a host trusts to sign grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Self {
        let hash = Sha256::digest(key.as_bytes());
        let id = format!("k-{}", hex(&hash[..8]));
        Self { key, id }
    }

    /// `k-` and 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `wpk1.<base64url>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}.{}", B64.encode(self.key.as_bytes()))
    }

    /// Parses `wpk1.<base64url>`.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let body = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| format!("not a public key: expected {PUBLIC_PREFIX}.…"))?;
        let bytes: [u8; 32] = B64
            .decode(body)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("not a public key: expected 32 bytes of base64url")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid ed25519 public key".to_owned())?;
        Ok(Self::new(key))
    }
}

/// A signing key. Only the collector (and the development signer) holds one.
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.0.verifying_key())
    }

    /// `wsk1.<base64url(seed)>`; keep it secret.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}.{}", B64.encode(self.0.to_bytes()))
    }

    /// Parses `wsk1.<base64url(seed)>` (surrounding whitespace and `#` comment
    /// lines ignored).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| KeyError::Secret("the file is empty".into()))?;
        let body = line
            .strip_prefix(SECRET_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| KeyError::Secret(format!("expected {SECRET_PREFIX}.…")))?;
        let seed: [u8; 32] = B64
            .decode(body)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError::Secret("expected 32 bytes of base64url".into()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Signs `token` (its `key_id` is set to this key's) and encodes it.
    pub fn sign(&self, token: &GrantToken) -> String {
        let mut token = token.clone();
        token.key_id = self.public().id;
        let bytes = token.encode_to_vec();
        let sig = self.0.sign(&signed_message(&bytes));
        format!("{TOKEN_PREFIX}.{}.{}", B64.encode(&bytes), B64.encode(sig.to_bytes()))
    }
}

/// The public keys a host trusts, from its `grant_public_key` file.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// One `wpk1.…` key per line, optionally followed by a comment; blank lines
    /// and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or_default();
            let key = PublicKey::from_text(first).map_err(|reason| KeyError::Line { line: i + 1, reason })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(keys))
    }

    pub fn from_keys(keys: Vec<PublicKey>) -> Self {
        Self(keys)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(PublicKey::id)
    }

    fn find(&self, id: &str) -> Option<&PublicKey> {
        self.0.iter().find(|k| k.id == id)
    }
}

/// A decoded token whose signature has not been checked yet: what it claims,
/// usable to describe a refusal, never to grant anything.
#[derive(Debug, Clone)]
pub struct Unverified {
    pub token: GrantToken,
    bytes: Vec<u8>,
    signature: Signature,
}

/// Splits and decodes `wgt1.<token>.<sig>` and checks the token is well formed.
pub fn decode(encoded: &str) -> Result<Unverified, TokenError> {
    let bad = |m: &str| TokenError::Malformed(m.to_owned());
    let encoded = encoded.trim();
    if encoded.is_empty() {
        return Err(TokenError::Missing);
    }
    if encoded.len() > MAX_TOKEN_LEN {
        return Err(bad("too long"));
    }
    let mut parts = encoded.split('.');
    let (Some(prefix), Some(body), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad(&format!("expected {TOKEN_PREFIX}.<token>.<signature>")));
    };
    if prefix != TOKEN_PREFIX {
        return Err(bad(&format!("unknown format {prefix:?}, expected {TOKEN_PREFIX}")));
    }
    let bytes = B64.decode(body).map_err(|_| bad("token part is not base64url"))?;
    let sig: [u8; 64] = B64
        .decode(sig)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("signature part is not 64 bytes of base64url"))?;
    let token = GrantToken::decode(bytes.as_slice()).map_err(|_| bad("token part does not decode"))?;
    check_fields(&token).map_err(|m| bad(&m))?;
    Ok(Unverified { token, bytes, signature: Signature::from_bytes(&sig) })
}

impl Unverified {
    /// Checks the signature against the trusted key the token names.
    pub fn verify_signature(self, keys: &TrustedKeys) -> Result<GrantToken, TokenError> {
        let key = keys.find(&self.token.key_id).ok_or_else(|| TokenError::UnknownKey(self.token.key_id.clone()))?;
        key.key
            .verify_strict(&signed_message(&self.bytes), &self.signature)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(self.token)
    }
}

/// Whether `token` may be used now (`now` in Unix ns) on `host`.
pub fn check_validity(token: &GrantToken, now: i64, host: &str) -> Result<(), TokenError> {
    if now >= token.not_after_unix_ns {
        return Err(TokenError::Expired(human(now.saturating_sub(token.not_after_unix_ns))));
    }
    if now.saturating_add(CLOCK_SKEW_NS) < token.not_before_unix_ns {
        return Err(TokenError::NotYetValid(human(token.not_before_unix_ns.saturating_sub(now))));
    }
    if !host_matches(&token.host, host) {
        return Err(TokenError::WrongHost { pattern: token.host.clone(), host: host.to_owned() });
    }
    Ok(())
}

/// Decodes, checks the signature, then validity and host: everything a host
/// checks offline except the policy digest and replay, which need its state.
pub fn verify(encoded: &str, keys: &TrustedKeys, now: i64, host: &str) -> Result<GrantToken, TokenError> {
    let token = decode(encoded)?.verify_signature(keys)?;
    check_validity(&token, now, host)?;
    Ok(token)
}

/// Matches a host name against a pattern: `*` is any run of characters, `?` one
/// character, anything else itself (host names compare case-insensitively).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let h: Vec<char> = host.to_ascii_lowercase().chars().collect();
    // Iterative glob with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut hi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while hi < h.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == h[hi]) {
            pi += 1;
            hi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, hi));
            pi += 1;
        } else if let Some((sp, sh)) = star {
            pi = sp + 1;
            hi = sh + 1;
            star = Some((sp, sh + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A fresh random grant id in the agent's form (`g-` and 12 hex digits: 48 bits,
/// never 0), for a signer to put in a new token.
pub fn fresh_grant_id() -> String {
    loop {
        let id = rand::random::<u64>() & 0xffff_ffff_ffff;
        if id != 0 {
            return format!("g-{id:012x}");
        }
    }
}

/// The subject's kind and name: `("user", "alice")`.
pub fn subject_parts(subject: &str) -> Option<(&str, &str)> {
    let (kind, name) = subject.split_once(':')?;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    (matches!(kind, "user" | "agent") && name_ok).then_some((kind, name))
}

/// What a token file holds: the token and the policy its digest binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    pub token: String,
    /// Policy text (YAML), "" for a token without a policy.
    pub policy: String,
}

impl TokenFile {
    /// The file's text: a comment saying what the token is, the token, and the
    /// policy after [`POLICY_MARKER`].
    pub fn render(&self, comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&self.token);
        out.push('\n');
        if !self.policy.is_empty() {
            out.push_str(POLICY_MARKER);
            out.push('\n');
            out.push_str(&self.policy);
            if !self.policy.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// The file on one line, for an environment variable (`WARRANT_TOKEN` sent
    /// over SSH): the token, then `:` and the policy in base64url when it has one.
    pub fn compact(&self) -> String {
        if self.policy.is_empty() {
            self.token.clone()
        } else {
            format!("{}:{}", self.token, B64.encode(self.policy.as_bytes()))
        }
    }

    /// Reads a token file: `#` comments and blank lines, one token line, then
    /// optionally [`POLICY_MARKER`] and the policy; or the [`Self::compact`] form.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let one_line = text.trim();
        if !one_line.contains('\n')
            && let Some((token, policy)) = one_line.split_once(':')
        {
            let policy = B64
                .decode(policy)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| KeyError::TokenFile("the policy after ':' is not base64url UTF-8".into()))?;
            return Self::parse(token).map(|f| Self { policy, ..f });
        }
        let (head, policy) = match text.split_once(&format!("\n{POLICY_MARKER}\n")) {
            Some((h, p)) => (h, p.to_owned()),
            None => match text.strip_suffix(&format!("\n{POLICY_MARKER}")) {
                Some(h) => (h, String::new()),
                None => (text, String::new()),
            },
        };
        let mut tokens = head.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let token = tokens.next().ok_or_else(|| KeyError::TokenFile("no token in it".into()))?.to_owned();
        if tokens.next().is_some() {
            return Err(KeyError::TokenFile(format!(
                "more than one line before {POLICY_MARKER:?}: expected one token"
            )));
        }
        if !token.starts_with(&format!("{TOKEN_PREFIX}.")) {
            return Err(KeyError::TokenFile(format!("the token line does not start with {TOKEN_PREFIX}.")));
        }
        Ok(Self { token, policy })
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + bytes.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(bytes);
    m
}

/// Field checks every token must pass before anything else is looked at.
fn check_fields(t: &GrantToken) -> Result<(), String> {
    if t.version != 1 {
        return Err(format!("version {}, this host reads 1", t.version));
    }
    let hex_part = t.grant.strip_prefix("g-").unwrap_or_default();
    if hex_part.is_empty()
        || hex_part.len() > 12
        || !hex_part.bytes().all(|b| b.is_ascii_hexdigit())
        || hex_part.bytes().all(|b| b == b'0')
    {
        return Err(format!("invalid grant id {:?}: expected g- and 1 to 12 hex digits", t.grant));
    }
    if subject_parts(&t.subject).is_none() {
        return Err(format!("invalid subject {:?}: expected user:NAME or agent:NAME", t.subject));
    }
    if t.host.is_empty() || !t.host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*' | '?')) {
        return Err(format!("invalid host pattern {:?}", t.host));
    }
    if t.not_before_unix_ns >= t.not_after_unix_ns {
        return Err("not_before is not before not_after".into());
    }
    if !t.policy_digest.is_empty() && !t.policy_digest.starts_with("sha256:") {
        return Err(format!("invalid policy digest {:?}", t.policy_digest));
    }
    if t.key_id.is_empty() {
        return Err("no key id".into());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `45s`, `3m12s`, `2h5m`, `3d4h`.
pub fn human(ns: i64) -> String {
    let s = ns.max(0) / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000_000_000;
    const MIN: i64 = 60_000_000_000;

    fn token() -> GrantToken {
        GrantToken {
            version: 1,
            grant: "g-0123456789ab".into(),
            subject: "user:alice".into(),
            host: "db-*".into(),
            policy_digest: String::new(),
            not_before_unix_ns: NOW - MIN,
            not_after_unix_ns: NOW + 10 * MIN,
            approvers: vec!["bob".into(), "carol".into()],
            reason: "INC-42".into(),
            key_id: String::new(),
            issued_at_unix_ns: NOW - MIN,
        }
    }

    fn trusted(k: &SecretKey) -> TrustedKeys {
        TrustedKeys::from_keys(vec![k.public()])
    }

    #[test]
    fn a_signed_token_verifies() {
        let k = SecretKey::generate();
        let t = verify(&k.sign(&token()), &trusted(&k), NOW, "db-1").unwrap();
        assert_eq!(t.subject, "user:alice");
        assert_eq!(t.key_id, k.public().id());
        assert_eq!(t.approvers, ["bob", "carol"]);
    }

    #[test]
    fn refusals_say_why() {
        let k = SecretKey::generate();
        let keys = trusted(&k);
        let enc = k.sign(&token());
        let other = SecretKey::generate();
        assert_eq!(
            verify(&other.sign(&token()), &keys, NOW, "db-1").unwrap_err(),
            TokenError::UnknownKey(other.public().id().to_owned())
        );
        assert_eq!(verify(&enc, &keys, NOW + 13 * MIN, "db-1").unwrap_err().to_string(), "expired 3m0s ago");
        assert_eq!(verify(&enc, &keys, NOW - 3 * MIN, "db-1").unwrap_err().to_string(), "not valid yet: starts in 2m0s");
        assert_eq!(verify(&enc, &keys, NOW, "web-1").unwrap_err().to_string(), "for host db-*, this is web-1");
        assert!(matches!(verify("wgt2.a.b", &keys, NOW, "db-1"), Err(TokenError::Malformed(_))));
        assert!(matches!(verify("nonsense", &keys, NOW, "db-1"), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn a_token_claiming_a_trusted_key_but_signed_by_another_fails() {
        let k = SecretKey::generate();
        let forger = SecretKey::generate();
        let real = k.sign(&token());
        let forged = forger.sign(&token());
        // The forger's token, with the trusted key's id swapped in.
        let mut t = decode(&forged).unwrap().token;
        t.key_id = k.public().id().to_owned();
        let sig = forged.rsplit('.').next().unwrap();
        let spliced = format!("{TOKEN_PREFIX}.{}.{sig}", B64.encode(t.encode_to_vec()));
        assert_eq!(verify(&spliced, &trusted(&k), NOW, "db-1").unwrap_err(), TokenError::BadSignature);
        assert!(verify(&real, &trusted(&k), NOW, "db-1").is_ok());
    }

    #[test]
    fn key_rotation_file_holds_several_keys() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let text = format!("# collector keys\n{} old\n\n{} current\n", a.public().to_text(), b.public().to_text());
        let keys = TrustedKeys::parse(&text).unwrap();
        assert_eq!(keys.ids().count(), 2);
        assert!(verify(&a.sign(&token()), &keys, NOW, "db-9").is_ok());
        assert!(verify(&b.sign(&token()), &keys, NOW, "db-9").is_ok());
        assert_eq!(TrustedKeys::parse("# none\n").unwrap_err(), KeyError::Empty);
        let err = TrustedKeys::parse("\nwpk1.zz\n").unwrap_err().to_string();
        assert!(err.starts_with("line 2: "), "{err}");
    }

    #[test]
    fn keys_round_trip_as_text() {
        let k = SecretKey::generate();
        let back = SecretKey::from_text(&format!("# dev key\n{}\n", k.to_text())).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::from_text(&k.public().to_text()).unwrap(), k.public());
        assert!(k.public().id().starts_with("k-") && k.public().id().len() == 18);
        assert!(SecretKey::from_text("wpk1.abc").is_err());
    }

    #[test]
    fn malformed_fields_are_refused_before_the_signature() {
        let k = SecretKey::generate();
        for (f, want) in [
            ((|t: &mut GrantToken| t.grant = "g-xyz".into()) as fn(&mut GrantToken), "invalid grant id"),
            (|t| t.grant = "g-0000".into(), "invalid grant id"),
            (|t| t.subject = "root".into(), "invalid subject"),
            (|t| t.subject = "user:".into(), "invalid subject"),
            (|t| t.host = String::new(), "invalid host pattern"),
            (|t| t.not_after_unix_ns = t.not_before_unix_ns, "not_before"),
            (|t| t.version = 2, "version 2"),
            (|t| t.policy_digest = "md5:x".into(), "invalid policy digest"),
        ] {
            let mut t = token();
            f(&mut t);
            let err = verify(&k.sign(&t), &trusted(&k), NOW, "db-1").unwrap_err().to_string();
            assert!(err.starts_with("malformed token: ") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn token_file_round_trip() {
        let f = TokenFile { token: "wgt1.a.b".into(), policy: "name: x\ndefault: allow\n".into() };
        let text = f.render("grant g-1 for user:alice\napproved by bob");
        assert!(text.starts_with("# grant g-1 for user:alice\n# approved by bob\nwgt1.a.b\n--- policy\n"));
        assert_eq!(TokenFile::parse(&text).unwrap(), f);
        let bare = TokenFile::parse("wgt1.a.b\n").unwrap();
        assert_eq!(bare, TokenFile { token: "wgt1.a.b".into(), policy: String::new() });
        assert!(TokenFile::parse("# only a comment\n").is_err());
        assert!(TokenFile::parse("wgt1.a.b\nwgt1.c.d\n").is_err());
        assert!(TokenFile::parse("hello\n").is_err());
        assert_eq!(TokenFile::parse(&f.compact()).unwrap(), f);
        assert!(!f.compact().contains('\n'));
        assert_eq!(TokenFile::parse(&bare.compact()).unwrap(), bare);
        assert!(TokenFile::parse("wgt1.a.b:!!").is_err());
    }

    #[test]
    fn fresh_grant_ids_are_well_formed() {
        let k = SecretKey::generate();
        for _ in 0..50 {
            let t = GrantToken { grant: fresh_grant_id(), ..token() };
            assert_eq!(t.grant.len(), 14);
            assert!(verify(&k.sign(&t), &trusted(&k), NOW, "db-1").is_ok(), "{}", t.grant);
        }
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("db-*", "db-1"));
        assert!(host_matches("db-*", "DB-primary"));
        assert!(!host_matches("db-*", "web-1"));
        assert!(host_matches("web-1", "web-1"));
        assert!(!host_matches("web-1", "web-10"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("w?b-*-a", "web-x-a"));
        assert!(!host_matches("w?b-*-a", "wb-x-a"));
        assert!(host_matches("*.*.prod", "db.eu.prod"));
    }

    proptest! {
        /// Any change to the token part of a signed token is refused: as
        /// malformed, or by its signature, never accepted.
        #[test]
        fn any_bit_flip_is_refused(byte in 0usize..4096, bit in 0u8..8) {
            let k = SecretKey::generate();
            let enc = k.sign(&token());
            let mut parts: Vec<String> = enc.split('.').map(str::to_owned).collect();
            let mut bytes = B64.decode(&parts[1]).unwrap();
            let i = byte % bytes.len();
            bytes[i] ^= 1 << bit;
            parts[1] = B64.encode(&bytes);
            let flipped = parts.join(".");
            prop_assert!(verify(&flipped, &trusted(&k), NOW, "db-1").is_err());
        }

        /// Any change to the signature is refused.
        #[test]
        fn any_signature_flip_is_refused(byte in 0usize..64, bit in 0u8..8) {
            let k = SecretKey::generate();
            let enc = k.sign(&token());
            let mut parts: Vec<String> = enc.split('.').map(str::to_owned).collect();
            let mut sig = B64.decode(&parts[2]).unwrap();
            sig[byte] ^= 1 << bit;
            parts[2] = B64.encode(&sig);
            prop_assert_eq!(verify(&parts.join("."), &trusted(&k), NOW, "db-1").unwrap_err(), TokenError::BadSignature);
        }

        /// Encode then decode gives the same token, whatever its contents.
        #[test]
        fn encode_decode_round_trip(
            grant in "g-[1-9a-f][0-9a-f]{0,11}",
            name in "[a-z][a-z0-9._-]{0,20}",
            host in "[a-z0-9*?.-]{1,20}",
            approvers in proptest::collection::vec("[a-z]{1,8}", 0..4),
            reason in ".{0,40}",
            start in 0i64..i64::MAX / 2,
            len in 1i64..1_000_000_000_000,
        ) {
            let k = SecretKey::generate();
            let mut t = GrantToken {
                version: 1, grant, subject: format!("agent:{name}"), host,
                policy_digest: String::new(), not_before_unix_ns: start, not_after_unix_ns: start + len,
                approvers, reason, key_id: String::new(), issued_at_unix_ns: start,
            };
            let enc = k.sign(&t);
            t.key_id = k.public().id().to_owned();
            let back = decode(&enc).unwrap().verify_signature(&trusted(&k)).unwrap();
            prop_assert_eq!(back, t);
        }

        /// `*` matches any run and `?` one character, like shell globs.
        #[test]
        fn glob_agrees_with_a_simple_recursive_matcher(p in "[ab*?]{0,8}", h in "[ab]{0,8}") {
            fn slow(p: &[u8], h: &[u8]) -> bool {
                match (p.first(), h.first()) {
                    (None, None) => true,
                    (Some(b'*'), _) => slow(&p[1..], h) || (!h.is_empty() && slow(p, &h[1..])),
                    (Some(b'?'), Some(_)) => slow(&p[1..], &h[1..]),
                    (Some(a), Some(b)) if a == b => slow(&p[1..], &h[1..]),
                    _ => false,
                }
            }
            prop_assert_eq!(host_matches(&p, &h), slow(p.as_bytes(), h.as_bytes()));
        }
    }
}
