//! The Debian packages of `cargo xtask package`, installed for real with `dpkg -i` on
//! this (throwaway) machine and purged at the end: the files land where they should,
//! the man pages and completions come from the clap definitions, the units pass
//! `systemd-analyze verify`, the shipped configs are ones the daemons parse, and each
//! daemon comes up when its unit's `ExecStart` is run as written (systemd is not PID 1
//! here), with only the variables of its `EnvironmentFile` substituted.
//!
//! The packaged agent never collides with the agents of tests running beside this one:
//! `/etc/warrant/agent.env` (the unit's EnvironmentFile) gives it its own socket, pin
//! dir, state dir and cgroup root, and the shipped `/etc/warrant/agent.toml`, which
//! every agent started without `--config` reads, sets nothing.
//!
//! The packages come from `$WARRANT_PACKAGE_DIR` (set by `cargo xtask test`), else
//! `<bin dir>/../packages`; this test builds nothing.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use warrant_tests::run::output_within;
use warrant_tests::{bins, cgroup, free_port, poll, random_hex};

const PACKAGES: [&str; 3] = ["warrant", "warrant-agent", "warrant-collector"];
const VERSION: &str = env!("CARGO_PKG_VERSION");
const UNITS: &str = "/lib/systemd/system";
const MAN1: &str = "/usr/share/man/man1";
/// The daemons' pages: section 8, system administration.
const MAN8: &str = "/usr/share/man/man8";
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn packages_install_run_and_purge() {
    let dir = match std::env::var_os("WARRANT_PACKAGE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => bins::bin_dir().join("../packages"),
    };
    let debs = PACKAGES.map(|name| find_deb(&dir, name));
    check_control_fields(&debs);

    // A run that died half-way may have left them installed.
    purge(false);
    let installed = Installed;
    let out = run(Command::new("dpkg").arg("-i").args(&debs));
    assert!(out.status.success(), "dpkg -i failed:\n{}", text(&out));

    check_installed_files();
    check_man_pages();
    check_completions();
    verify_units();
    check_shipped_configs();
    run_agent_unit();
    run_collector_unit();

    drop(installed);
    check_purged();
}

/// Purges the packages when dropped, also when the test panics.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        purge(!std::thread::panicking());
    }
}

/// `dpkg --purge` of every package (a no-op for those not installed).
fn purge(must_work: bool) {
    let out = run(Command::new("dpkg").arg("--purge").args(PACKAGES));
    if must_work {
        assert!(out.status.success(), "dpkg --purge failed:\n{}", text(&out));
    } else if !out.status.success() {
        eprintln!("packages: dpkg --purge failed:\n{}", text(&out));
    }
}

/// The one `NAME_<version>_<arch>.deb` in `dir`.
fn find_deb(dir: &Path, name: &str) -> PathBuf {
    let listing = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!("cannot list {}: {e}\n\nMake the packages with `cargo xtask package`.", dir.display())
    });
    let found: Vec<PathBuf> = listing
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| {
            let file = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            file.starts_with(&format!("{name}_")) && file.ends_with(".deb")
        })
        .collect();
    assert!(
        found.len() == 1,
        "expected one {name}_*.deb in {}, found {found:?}\n\nMake the packages with `cargo xtask package`.",
        dir.display()
    );
    found.into_iter().next().expect("one")
}

/// Version, architecture and the dependencies that matter, as dpkg reads them.
fn check_control_fields(debs: &[PathBuf; 3]) {
    let field = |deb: &Path, name: &str| {
        let out = run(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name));
        assert!(out.status.success(), "dpkg-deb --field {} {name}: {}", deb.display(), text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for (deb, name) in debs.iter().zip(PACKAGES) {
        assert_eq!(field(deb, "Package"), name);
        assert_eq!(field(deb, "Version"), VERSION, "{}", deb.display());
        assert_eq!(field(deb, "Architecture"), "amd64", "{}", deb.display());
        let depends = field(deb, "Depends");
        assert!(depends.contains("libc6 (>= 2."), "{name} Depends: {depends}");
    }
    assert!(field(&debs[1], "Depends").contains(&format!("warrant (= {VERSION})")));
    assert!(field(&debs[2], "Depends").contains("adduser"));
    let conffiles = |deb: &Path| {
        let out = run(Command::new("dpkg-deb").arg("--info").arg(deb).arg("conffiles"));
        assert!(out.status.success(), "dpkg-deb --info {} conffiles: {}", deb.display(), text(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(conffiles(&debs[1]), ["/etc/warrant/agent.toml", "/etc/warrant/agent.env"]);
    assert_eq!(conffiles(&debs[2]), ["/etc/warrant/collector.toml", "/etc/warrant/collector.env"]);
}

fn check_installed_files() {
    for bin in PACKAGES {
        let path = Path::new("/usr/bin").join(bin);
        let out = run(Command::new(&path).arg("--version"));
        assert!(out.status.success(), "{} --version: {}", path.display(), text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{bin} {VERSION}"));
    }
    for unit in ["warrant-agent.service", "warrant-collector.service"] {
        assert!(Path::new(UNITS).join(unit).is_file(), "{unit} is not in {UNITS}");
        // The postinst enabled it (deb-systemd-helper works without systemd running).
        let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(unit);
        if Path::new("/usr/bin/deb-systemd-helper").exists() {
            assert!(wants.is_symlink(), "the postinst did not enable {unit} ({} is missing)", wants.display());
        }
    }
    for conf in ["agent.toml", "agent.env", "collector.toml", "collector.env"] {
        assert!(Path::new("/etc/warrant").join(conf).is_file(), "/etc/warrant/{conf} is missing");
    }
    let mode = |p: &str| std::fs::metadata(p).unwrap_or_else(|e| panic!("{p}: {e}")).permissions().mode() & 0o7777;
    assert_eq!(mode("/var/lib/warrant"), 0o700, "the agent's state dir is root's alone");
    assert_eq!(mode("/var/lib/warrant-collector"), 0o700);
    let uid = collector_id("-u");
    assert_eq!(std::fs::metadata("/var/lib/warrant-collector").expect("stat").uid(), uid);
    for doc in PACKAGES {
        assert!(Path::new("/usr/share/doc").join(doc).join("copyright").is_file(), "{doc} has no copyright file");
    }
}

/// Every subcommand of `warrant --help` has its page and is named in warrant(1); the
/// daemons' pages describe their flags but not the hidden packaging ones.
fn check_man_pages() {
    let help = run(Command::new("/usr/bin/warrant").arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("warrant --help lists its commands")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"grant") && commands.contains(&"completions"), "{commands:?}");
    let top = man_page("warrant");
    for c in &commands {
        assert!(top.contains(&format!("warrant\\-{}(1)", c.replace('-', "\\-"))), "warrant(1) does not name {c}");
        assert!(man_page(&format!("warrant-{c}")).starts_with(".ie"), "warrant-{c}(1) is no man page");
    }
    assert!(!top.contains("man\\-pages"), "the packaging option --man-pages is documented");
    let issue = man_page("warrant-grant-issue");
    assert!(issue.contains("\\-\\-subject"), "{issue}");
    let agent = daemon_page("warrant-agent");
    assert!(agent.contains(".TH warrant-agent 8"), "warrant-agent's page is section 8");
    assert!(!Path::new(MAN1).join("warrant-agent.1.gz").exists(), "no section 1 page for a daemon");
    assert!(agent.contains("\\-\\-pin\\-dir") && agent.contains("\\-\\-uninstall"), "{agent}");
    assert!(!agent.contains("\\-\\-man\\-pages") && !agent.contains("\\-\\-completions"), "{agent}");
    assert!(daemon_page("warrant-collector").contains("\\-\\-data\\-dir"));
    assert!(daemon_page("warrant-collector-verify").contains("verify"));

    // And man itself renders them, when it is installed.
    if Path::new("/usr/bin/man").exists() {
        let out = run(
            Command::new("man")
                .env("MANWIDTH", "100")
                .env("LC_ALL", "C")
                .args(["-P", "cat", "-l"])
                .arg(Path::new(MAN1).join("warrant-grant-issue.1.gz")),
        );
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && page.contains("--subject"), "man -l warrant-grant-issue.1.gz:\n{}", text(&out));
    } else {
        eprintln!("packages: man is not installed; the pages are checked as roff only");
    }
}

/// The roff text of `/usr/share/man/man1/NAME.1.gz`.
fn man_page(name: &str) -> String {
    page_at(&Path::new(MAN1).join(format!("{name}.1.gz")))
}

/// The roff text of `/usr/share/man/man8/NAME.8.gz`.
fn daemon_page(name: &str) -> String {
    page_at(&Path::new(MAN8).join(format!("{name}.8.gz")))
}

fn page_at(path: &Path) -> String {
    assert!(path.is_file(), "{} is missing", path.display());
    let out = run(Command::new("gzip").arg("-dc").arg(path));
    assert!(out.status.success(), "gzip -dc {}: {}", path.display(), text(&out));
    let page = String::from_utf8(out.stdout).expect("a man page is UTF-8");
    assert!(page.contains(".TH "), "{} has no .TH header", path.display());
    page
}

/// bash completes `warrant gr` to grant and grants, and `warrant-agent --pin` to
/// --pin-dir; the zsh and fish files are there (and parse, when the shell is installed).
fn check_completions() {
    let complete = |bin: &str, words: &[&str]| -> Vec<String> {
        let script = format!(
            "source /usr/share/bash-completion/completions/{bin} || exit 3\n\
             spec=$(complete -p {bin}) || exit 4\n\
             fn=${{spec#*-F }}; fn=${{fn%% *}}\n\
             COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}\n\
             \"$fn\" {bin} {cur} {prev}\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            words = words.join(" "),
            cword = words.len() - 1,
            cur = words[words.len() - 1],
            prev = words[words.len() - 2],
        );
        let out = run(Command::new("bash").args(["--norc", "--noprofile", "-c", &script]));
        assert!(out.status.success(), "bash completion of {words:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    };
    let got = complete("warrant", &["warrant", "gr"]);
    assert!(got.contains(&"grant".to_owned()) && got.contains(&"grants".to_owned()), "warrant gr<TAB>: {got:?}");
    assert!(got.iter().all(|w| w.starts_with("gr")), "warrant gr<TAB>: {got:?}");
    let got = complete("warrant-agent", &["warrant-agent", "--pin"]);
    assert_eq!(got, ["--pin-dir"], "warrant-agent --pin<TAB>");
    let got = complete("warrant-collector", &["warrant-collector", "ver"]);
    assert_eq!(got, ["verify"], "warrant-collector ver<TAB>");

    for bin in PACKAGES {
        let bash = read(Path::new("/usr/share/bash-completion/completions").join(bin));
        assert!(!bash.contains("man-pages"), "the packaging options are offered to bash users of {bin}");
        let zsh = Path::new("/usr/share/zsh/vendor-completions").join(format!("_{bin}"));
        let fish = Path::new("/usr/share/fish/vendor_completions.d").join(format!("{bin}.fish"));
        let zsh_text = std::fs::read_to_string(&zsh).unwrap_or_else(|e| panic!("{}: {e}", zsh.display()));
        assert!(zsh_text.starts_with(&format!("#compdef {bin}")), "{}", zsh.display());
        let fish_text = std::fs::read_to_string(&fish).unwrap_or_else(|e| panic!("{}: {e}", fish.display()));
        assert!(fish_text.contains(&format!("complete -c {bin} ")), "{}", fish.display());
        for (shell, arg, file) in [("zsh", "-n", &zsh), ("fish", "--no-execute", &fish)] {
            if which(shell) {
                let out = run(Command::new(shell).arg(arg).arg(file));
                assert!(out.status.success(), "{shell} {arg} {}: {}", file.display(), text(&out));
            }
        }
    }
}

/// `systemd-analyze verify` on both units, when systemd-analyze exists.
fn verify_units() {
    if !which("systemd-analyze") {
        eprintln!("packages: systemd-analyze is not installed (the systemd package); the units are not verified");
        return;
    }
    let units = ["warrant-agent.service", "warrant-collector.service"].map(|u| Path::new(UNITS).join(u));
    let out = run(Command::new("systemd-analyze").arg("verify").args(&units));
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("warrant")).collect();
    assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify:\n{}", text(&out));
    // What systemd thinks of each sandbox, for the log (the agent's is low on purpose;
    // see the comment at the top of its unit).
    for unit in &units {
        let out = run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(unit));
        if let Some(line) = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.contains("Overall exposure")) {
            eprintln!("packages: {}: {}", unit.display(), line.trim());
        }
    }
}

/// As shipped the configs set nothing; with every commented setting uncommented, the
/// daemons still parse them (each example is a valid key and value).
fn check_shipped_configs() {
    let dir = tempfile::tempdir().expect("tempdir");

    // The shipped agent.toml is what an agent without --config reads.
    let out = run(Command::new("/usr/bin/warrant-agent").arg("--check"));
    assert_ne!(out.status.code(), Some(2), "warrant-agent --check with the shipped agent.toml:\n{}", text(&out));
    let all = dir.path().join("agent.toml");
    std::fs::write(&all, uncomment(&read("/etc/warrant/agent.toml"))).expect("write agent.toml");
    let out = run(Command::new("/usr/bin/warrant-agent").arg("--config").arg(&all).arg("--check"));
    assert_ne!(out.status.code(), Some(2), "warrant-agent --check with every setting of agent.toml:\n{}", text(&out));

    // The collector resolves its config before it reads the CA: "missing ca" as
    // shipped, "cannot read the CA" (not a config error) with every setting.
    let out = run(&mut Command::new("/usr/bin/warrant-collector"));
    assert!(text(&out).contains("missing ca"), "warrant-collector with the shipped collector.toml:\n{}", text(&out));
    let missing = dir.path().join("no-such-ca.pem");
    let body: String = uncomment(&read("/etc/warrant/collector.toml"))
        .lines()
        .map(|l| if l.starts_with("ca = ") { format!("ca = {:?}\n", missing.display().to_string()) } else { format!("{l}\n") })
        .collect();
    let all = dir.path().join("collector.toml");
    std::fs::write(&all, body).expect("write collector.toml");
    let out = run(Command::new("/usr/bin/warrant-collector").arg("--config").arg(&all));
    assert!(
        text(&out).contains("cannot read the CA certificate"),
        "warrant-collector with every setting of collector.toml:\n{}",
        text(&out)
    );
}

/// `#key = value` and `#[table]` lines without the `#`; prose (`# text`) stays.
fn uncomment(config: &str) -> String {
    config
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => format!("{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect()
}

/// The packaged agent, started as its unit would start it, serves, runs a session, and
/// after a restart (SIGTERM, then ExecStart again) adopts the pins it left.
fn run_agent_unit() {
    let id = random_hex();
    let tmp = tempfile::Builder::new().prefix("warrant-pkgtest-").tempdir().expect("tempdir");
    let socket = tmp.path().join("agent.sock");
    let scratch = Scratch {
        pin_dir: PathBuf::from(format!("/sys/fs/bpf/warrant-pkgtest-{id}")),
        // Beside the other tests' state dirs (see tests/agent.rs): outside the temp dir.
        state_root: PathBuf::from(format!("/var/lib/warrant-tests/warrant-pkgtest-{id}")),
        cgroup_root: cgroup::mount().join(format!("warrant-pkgtest-{id}")),
    };
    let state_dir = scratch.state_root.join("state");
    std::fs::create_dir_all(&state_dir).expect("create the state dir");
    std::fs::write(
        "/etc/warrant/agent.env",
        format!(
            "# written by tests/tests/packages.rs\nWARRANT_AGENT_ARGS=--socket {} --pin-dir {} --state-dir {} \
             --cgroup-root {} --log-level info\n",
            socket.display(),
            scratch.pin_dir.display(),
            state_dir.display(),
            scratch.cgroup_root.display()
        ),
    )
    .expect("write /etc/warrant/agent.env");

    let unit = Unit::read("warrant-agent.service");
    assert_eq!(unit.one("Service", "KillMode"), "mixed");
    assert_eq!(unit.one("Service", "Restart"), "always");
    let argv = unit.exec_start();
    assert_eq!(argv[..3], ["/usr/bin/warrant-agent", "--config", "/etc/warrant/agent.toml"]);
    assert!(argv.contains(&scratch.pin_dir.display().to_string()), "the EnvironmentFile was not substituted: {argv:?}");

    let log = tmp.path().join("agent.log");
    let mut agent = Daemon::start(&argv, &log);
    let warrant = |args: &[&str]| run(Command::new("/usr/bin/warrant").arg("--socket").arg(&socket).args(args));
    agent.wait_until("warrant status answers", || warrant(&["status"]).status.success());

    let out = warrant(&["grant", "issue", "--subject", "pkgtest", "--ttl", "2m", "--reason", "packages test"]);
    assert!(out.status.success(), "grant issue: {}", text(&out));
    let grant = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = warrant(&["exec", "--grant", &grant, "--", "/bin/sh", "-c", "echo under-the-packaged-agent"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("under-the-packaged-agent"),
        "a session under the packaged agent: {}\nagent log:\n{}",
        text(&out),
        read(&log)
    );

    // What `systemctl restart` does with KillMode=mixed: SIGTERM, then the same
    // ExecStart. The pins stay and the new agent adopts them.
    let status = agent.stop();
    assert!(status.success(), "the agent's SIGTERM exit: {status}\n{}", read(&log));
    assert!(scratch.pin_dir.is_dir(), "the pins did not outlive the agent");
    let mut agent = Daemon::start(&argv, &log);
    agent.wait_until("warrant status answers after the restart", || warrant(&["status"]).status.success());
    assert!(read(&log).contains("re-adopted the maps a previous agent left"), "{}", read(&log));
    let out = warrant(&["grants"]);
    assert!(text(&out).contains(&grant), "the grant outlived the restart: {}", text(&out));
    let status = agent.stop();
    assert!(status.success(), "the agent's SIGTERM exit: {status}\n{}", read(&log));

    // The packaged binary removes what it pinned.
    let out = run(Command::new("/usr/bin/warrant-agent").arg("--pin-dir").arg(&scratch.pin_dir).arg("--uninstall"));
    assert!(out.status.success() && !scratch.pin_dir.exists(), "warrant-agent --uninstall: {}", text(&out));
}

/// The packaged collector, started as its unit would start it (as its User= and
/// Group=), serves metrics and answers the packaged CLI over mTLS.
fn run_collector_unit() {
    let tmp = tempfile::Builder::new().prefix("warrant-pkgtest-").tempdir().expect("tempdir");
    // The collector's user must reach the certificates and its data dir.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let pki = tmp.path().join("pki");
    let certs = |args: &[&str]| {
        let out = run(Command::new("/usr/bin/warrant").arg("certs").args(args).arg("--dir").arg(&pki));
        assert!(out.status.success(), "warrant certs {args:?}: {}", text(&out));
    };
    certs(&["init"]);
    certs(&["issue", "--name", "collector", "--role-hint", "collector"]);
    certs(&["issue", "--name", "pkgadmin", "--role-hint", "admin"]);
    let (uid, gid) = (collector_id("-u"), collector_id("-g"));
    std::fs::set_permissions(&pki, std::fs::Permissions::from_mode(0o755)).expect("chmod pki");
    std::os::unix::fs::chown(pki.join("collector.key"), Some(0), Some(gid)).expect("chgrp the key");
    std::fs::set_permissions(pki.join("collector.key"), std::fs::Permissions::from_mode(0o640)).expect("chmod key");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod data");
    let (port, metrics_port) = (free_port(), free_port());
    std::fs::write(
        "/etc/warrant/collector.env",
        format!(
            "# written by tests/tests/packages.rs\nWARRANT_COLLECTOR_ARGS=--ca {pki}/ca.pem --cert {pki}/collector.pem \
             --key {pki}/collector.key --listen 127.0.0.1:{port} --metrics-listen 127.0.0.1:{metrics_port} \
             --data-dir {data} --role pkgadmin=admin\n",
            pki = pki.display(),
            data = data.display(),
        ),
    )
    .expect("write /etc/warrant/collector.env");

    let unit = Unit::read("warrant-collector.service");
    let (user, group) = (unit.one("Service", "User"), unit.one("Service", "Group"));
    assert_eq!((user.as_str(), group.as_str()), ("warrant-collector", "warrant-collector"));
    assert_eq!(unit.one("Service", "ProtectSystem"), "strict");
    assert_eq!(unit.one("Service", "NoNewPrivileges"), "yes");
    let mut argv: Vec<String> =
        ["setpriv", &format!("--reuid={user}"), &format!("--regid={group}"), "--init-groups", "--"].map(String::from).into();
    argv.extend(unit.exec_start());

    let log = tmp.path().join("collector.log");
    let mut collector = Daemon::start(&argv, &log);
    collector.wait_until("GET /metrics answers", || {
        http_get(metrics_port, "/metrics").is_some_and(|body| body.contains("warrant_collector_"))
    });
    let out = run(
        Command::new("/usr/bin/warrant")
            .arg("--collector")
            .arg(format!("https://127.0.0.1:{port}"))
            .arg("--ca")
            .arg(pki.join("ca.pem"))
            .arg("--cert")
            .arg(pki.join("pkgadmin.pem"))
            .arg("--key")
            .arg(pki.join("pkgadmin.key"))
            .arg("agents"),
    );
    assert!(out.status.success(), "warrant agents against the packaged collector: {}\n{}", text(&out), read(&log));
    let mut made = std::fs::read_dir(&data).expect("list data").filter_map(Result::ok).filter_map(|e| e.metadata().ok());
    assert!(made.any(|m| m.uid() == uid), "nothing in the data dir is the collector user's: not run as it");
    let status = collector.stop();
    assert!(status.success(), "the collector's SIGTERM exit: {status}\n{}", read(&log));
}

/// A daemon started from an `ExecStart` argv, its output appended to a log; killed if
/// still running when dropped.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(argv: &[String], log: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?}: {e}"));
        Self { child: Some(child), log: log.to_path_buf() }
    }

    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let child = self.child.as_mut().expect("running");
        let up = poll(Duration::from_secs(30), || {
            if let Some(st) = child.try_wait().expect("try_wait") {
                panic!("the daemon exited with {st} before {what}:\n{}", read(&self.log));
            }
            ready().then_some(())
        });
        assert!(up.is_some(), "{what}: not within 30 s\n{}", read(&self.log));
    }

    /// SIGTERM (what systemd sends first), then its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid fits");
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = poll(Duration::from_secs(20), || child.try_wait().expect("try_wait"));
        status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the daemon did not exit within 20 s of SIGTERM:\n{}", read(&self.log))
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The packaged agent's pins, state and cgroups, removed when dropped.
struct Scratch {
    pin_dir: PathBuf,
    state_root: PathBuf,
    cgroup_root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        cgroup::remove_tree(&self.cgroup_root);
        let _ = std::fs::remove_dir_all(&self.state_root);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// A unit file's `[Section]` → `(key, value)` lines.
struct Unit {
    sections: BTreeMap<String, Vec<(String, String)>>,
}

impl Unit {
    fn read(name: &str) -> Self {
        let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut current = String::new();
        for line in read(Path::new(UNITS).join(name)).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(!line.ends_with('\\'), "{name}: continued lines are not handled here: {line}");
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = s.to_owned();
            } else {
                let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{name}: not key=value: {line}"));
                sections.entry(current.clone()).or_default().push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Self { sections }
    }

    fn all(&self, section: &str, key: &str) -> Vec<String> {
        let lines = self.sections.get(section).map(Vec::as_slice).unwrap_or_default();
        lines.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    fn one(&self, section: &str, key: &str) -> String {
        let all = self.all(section, key);
        assert_eq!(all.len(), 1, "[{section}] {key}= is set {} times", all.len());
        all.into_iter().next().expect("one")
    }

    /// `ExecStart=` as argv, with `$VAR` (split on whitespace) and `${VAR}` (one word)
    /// taken from the `EnvironmentFile=`s, as systemd expands them; anything this
    /// does not handle (quotes, prefixes like `-` or `+`) fails the test.
    fn exec_start(&self) -> Vec<String> {
        let mut env = BTreeMap::new();
        for file in self.all("Service", "EnvironmentFile") {
            let (optional, path) = match file.strip_prefix('-') {
                Some(p) => (true, p.to_owned()),
                None => (false, file.clone()),
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => env.extend(parse_env_file(&text)),
                Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("EnvironmentFile {path}: {e}"),
            }
        }
        let line = self.one("Service", "ExecStart");
        assert!(!line.contains(['"', '\'']), "quoting in ExecStart is not handled here: {line}");
        assert!(line.starts_with('/'), "ExecStart prefixes are not handled here: {line}");
        let mut argv = Vec::new();
        for word in line.split_whitespace() {
            if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
                argv.push(env.get(name).cloned().unwrap_or_default());
            } else if let Some(name) = word.strip_prefix('$') {
                argv.extend(env.get(name).into_iter().flat_map(|v| v.split_whitespace().map(str::to_owned)));
            } else {
                assert!(!word.contains('$'), "a variable inside a word is not handled here: {word}");
                argv.push(word.to_owned());
            }
        }
        argv
    }
}

/// `KEY=VALUE` lines of a systemd environment file (comments and blank lines skipped,
/// one layer of quotes removed).
fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// The body of `GET path` on 127.0.0.1:port when it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")).then(|| body.to_owned())
}

/// After the purge: no program, unit, man page or config left, and dpkg knows none.
fn check_purged() {
    for path in [
        "/usr/bin/warrant",
        "/usr/bin/warrant-agent",
        "/usr/bin/warrant-collector",
        "/lib/systemd/system/warrant-agent.service",
        "/lib/systemd/system/warrant-collector.service",
        "/etc/systemd/system/multi-user.target.wants/warrant-agent.service",
        "/etc/warrant/agent.toml",
        "/etc/warrant/agent.env",
        "/etc/warrant/collector.toml",
        "/usr/share/man/man1/warrant.1.gz",
        "/usr/share/man/man8/warrant-agent.8.gz",
        "/usr/share/bash-completion/completions/warrant",
    ] {
        assert!(!Path::new(path).exists() && !Path::new(path).is_symlink(), "{path} is left after dpkg --purge");
    }
    for name in PACKAGES {
        let out = run(Command::new("dpkg-query").args(["-W", "-f", "${Status}"]).arg(name));
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(!status.contains("ok installed") && !status.contains("config-files"), "{name} is left: {status}");
    }
}

/// `id -u` or `id -g` of the warrant-collector user.
fn collector_id(flag: &str) -> u32 {
    let out = run(Command::new("id").arg(flag).arg("warrant-collector"));
    assert!(out.status.success(), "the postinst made no warrant-collector user: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a number")
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn run(cmd: &mut Command) -> Output {
    output_within(cmd, TIMEOUT)
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
