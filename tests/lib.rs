//! End-to-end test harness for warrant: a real agent on the real kernel, driven
//! through its binaries (`warrant-agent`, `warrant`) exactly as an operator would,
//! with real workloads (`warrant-testbin`) doing real fork/exec/open/connect.
//!
//! Nothing here links the agent: the system under test is a black box of binaries,
//! a unix socket and an audit log. Every test starts its own agent with its own
//! socket, bpffs pin dir, state dir and cgroup root, so tests run in parallel.
//!
//! # Layout
//! - [`bins`]: where the binaries under test and the workload binary are.
//! - [`agent`]: [`TestAgent`], one agent per test; stopped and cleaned up on drop.
//! - [`audit`]: [`AuditLog`], the agent's hash-chained JSON-lines audit log, and
//!   `wait_for_event`, the robust way to assert what the agent saw.
//! - [`session`]: [`Session`] (a spawned `warrant exec`) and [`Watch`] (a spawned
//!   `warrant watch`), with their output collected line by line.
//! - [`run`]: running a command with a deadline, and [`Lines`], a line collector.
//! - [`procfs`]: `/proc` helpers: liveness excluding zombies, parents, cgroups, and
//!   [`Marker`], the env marker that finds (and on drop kills) every process a test
//!   started, wherever it went.
//! - [`cgroup`]: cgroup v2 mount discovery and [`TempCgroup`].
//! - [`sshd`]: [`Sshd`], a real OpenSSH server on loopback, and [`TestUser`].
//! - [`tokens`]: [`Signer`], a development key that signs grant tokens through
//!   `warrant token sign`, as the collector would.
//! - [`workload`]: a [`Tree`] is a `warrant-testbin tree` under a grant with every
//!   pid known; plus small helpers the tests share.
//! - [`collector`]: [`TestCollector`], one `warrant-collector` per test with a
//!   development PKI (rcgen) and certificates for agents and every role, plus
//!   `collector::client` (tonic mTLS channels) to act as an agent or a person.
//! - [`fleet`]: agents streaming to a [`TestCollector`]; what reached its log
//!   (exactly once, by `(agent, boot, seq)`), and the CLI as a certificate holder.
//!
//! Tests panic rather than return `Result`: a panic carries a backtrace and the
//! agent's log (printed by [`TestAgent`]'s drop when the test failed).

pub mod agent;
pub mod audit;
pub mod bins;
pub mod cgroup;
pub mod collector;
pub mod fleet;
pub mod procfs;
pub mod run;
pub mod session;
pub mod sshd;
pub mod tokens;
pub mod workload;

pub use agent::{AgentOptions, TestAgent, Uplink};
pub use audit::AuditLog;
pub use cgroup::TempCgroup;
pub use collector::{ClientIdentity, CollectorOptions, Pki, TestCollector};
pub use procfs::Marker;
pub use run::Lines;
pub use session::{Session, Watch};
pub use sshd::{Sshd, TestUser};
pub use tokens::Signer;
pub use workload::Tree;

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, or gives up after `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Now, as nanoseconds since the Unix epoch (to compare with a grant's expiry).
pub fn now_unix_ns() -> i128 {
    i128::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_nanos(),
    )
    .expect("fits")
}

/// Sixteen random hex digits, for names that must not collide between parallel tests.
pub fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to :0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}
