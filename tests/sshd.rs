//! A real OpenSSH server on loopback for login tests: [`Sshd`] runs `sshd` with its
//! own config, host key, client key and port in a temp dir, and [`TestUser`] is a
//! local account made for one test (removed on drop).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::run::output_within;
use crate::{free_port, poll};

/// Where Debian's openssh-server puts the daemon (`cargo xtask setup` installs it).
const SSHD: &str = "/usr/sbin/sshd";

/// A local user made for one test.
pub struct TestUser {
    /// Login name (`wt` and 10 hex digits).
    name: String,
}

impl TestUser {
    /// `useradd` with a home and bash; the password field is `*` (no password,
    /// but not locked: sshd refuses key logins to locked accounts).
    pub fn create() -> Self {
        let name = format!("wt{}", &crate::random_hex()[..10]);
        run_ok(Command::new("useradd").args(["--create-home", "--shell", "/bin/bash", &name]));
        run_ok(Command::new("usermod").args(["-p", "*", &name]));
        Self { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's uid, from `id -u`.
    pub fn uid(&self) -> u32 {
        let out = run_ok(Command::new("id").args(["-u", &self.name]));
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("id -u prints a number")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["--remove", "--force", &self.name]).output();
    }
}

/// A running sshd.
pub struct Sshd {
    /// The daemon; killed on drop.
    child: Child,
    /// Config, keys, log and the ForceCommand binary; removed on drop.
    dir: tempfile::TempDir,
    /// Loopback port it listens on.
    port: u16,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 admitting only `user` by key, with `force_command`
    /// as every session's command and `WARRANT_TOKEN` accepted from clients.
    /// `programs` are copied into the daemon's dir (world-readable) and `{NAME}` in
    /// `force_command` replaced by the copy's path, so the user can run them.
    pub fn start(user: &str, force_command: &str, programs: &[(&str, &Path)]) -> Self {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing\n\nInstall openssh-server (`cargo xtask setup` does)."
        );
        let dir = tempfile::Builder::new().prefix("warrant-sshd-").tempdir().expect("create temp dir");
        let d = dir.path();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod sshd dir");
        // The privilege-separation directory sshd insists on (made by the service
        // unit, which nobody started here).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let mut force = force_command.to_owned();
        for (name, src) in programs {
            let dst = d.join(name);
            std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod program");
            force = force.replace(&format!("{{{name}}}"), dst.to_str().expect("UTF-8"));
        }
        for key in ["host_key", "client_key"] {
            run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join(key)));
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AllowUsers {user}\nAcceptEnv WARRANT_TOKEN\nForceCommand {force}\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("write sshd_config");
        let log = std::fs::File::create(d.join("sshd.log")).expect("create sshd log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut s = Self { child, dir, port };
        let up = poll(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        if up.is_none() || s.child.try_wait().ok().flatten().is_some() {
            panic!("sshd did not start\n{}", s.log());
        }
        s
    }

    /// `ssh user@127.0.0.1 -p PORT [command]`, sending `WARRANT_TOKEN` when given.
    pub fn ssh(&self, user: &str, token: Option<&str>, command: &str) -> Output {
        let d = self.dir.path();
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-i"])
            .arg(d.join("client_key"))
            .args(["-p", &self.port.to_string()])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]);
        if let Some(t) = token {
            c.arg("-o").arg(format!("SetEnv=WARRANT_TOKEN={t}"));
        }
        c.arg(format!("{user}@127.0.0.1")).arg(command);
        output_within(&mut c, Duration::from_secs(60))
    }

    /// The daemon's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "--- sshd log ---\n{}\n--- end of sshd log ---", self.log());
        }
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = output_within(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

