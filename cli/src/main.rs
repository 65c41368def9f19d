//! `warrant`: the command line for on-call and security teams.
//!
//! It talks to the agent's gRPC API (`warrant.v1.Agent`) on a unix socket, or, with
//! `--collector URL`, to a collector (`warrant.v1.Collector`) over mTLS; `policy
//! check` and `certs` need neither.
//! This file is the flag tree and the exit-status policy; each command family
//! lives in its own module:
//!
//! - `rpc`: the call plumbing both clients share: deadlines, error messages with hints.
//! - `client`: the agent client (its unix socket), one wrapper per RPC.
//! - `grant`: `grant issue`, `grants`.
//! - `exec`: `exec` (run a command as a new session, under a grant or a signed
//!   token), `attach`.
//! - `login`: `login` (an SSH ForceCommand: a login let in by a token).
//! - `token`: `token keygen | sign | compact` (a development signer).
//! - `sessions`, `watch`, `kill` (`kill`, `revoke`), `status`.
//! - `approvals`: `request`, `requests`, `approve`, `deny`, `extend` (the approval
//!   flow on a collector, which signs the grant token).
//! - `remote`: the collector client (`--collector`, `--ca/--cert/--key`, mTLS), one wrapper per RPC.
//! - `query`, `agents`, `audit` (`audit verify`): history, fleet, log checks.
//! - `certs`: a development CA and certificates.
//! - `policy`: `policy check` (validate policy files locally), `policy push | list | show |
//!   retire` (the collector's policy catalogue, which requests name).
//! - `target`: one client for either the agent or a collector.
//! - `filter`: the event filter flags watch, query and report share, and their times.
//! - `console`: `console`, the web UI (axum, embedded assets).
//! - `docs`: `completions`, and `--completions`/`--man-pages` for packaging, from this flag tree.
//! - `render`: how an event looks (JSON, one line, a report), for watch, query, report, console.
//! - `output`: tables, durations, clock times, colors, escaping.
//!
//! Exit status: 0 on success (and when stdout is closed early, `warrant watch | head`);
//! 2 for any error; 1 when a kill left survivors or `audit verify` found damage; 3 when
//! a kill through the collector is queued because the agent is not connected;
//! 126/127 from `exec` like a shell.

mod agents;
mod approvals;
mod audit;
mod certs;
mod client;
mod console;
mod docs;
mod exec;
mod filter;
mod follow;
mod grant;
mod kill;
mod launch;
mod login;
mod output;
mod policy;
mod pty;
mod query;
mod remote;
mod render;
mod sessions;
mod report;
mod rpc;
mod status;
mod target;
mod token;
mod watch;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::client::Fail;

/// Temporary production access, watched and revocable: issue grants, run
/// commands under them, watch what they do, and kill them.
#[derive(Debug, Parser)]
#[command(name = "warrant", version, max_term_width = 100)]
struct Cli {
    /// The agent's unix socket.
    #[arg(long, global = true, value_name = "PATH", env = "WARRANT_SOCKET", default_value = client::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The collector to use instead of the agent.
    #[command(flatten)]
    remote: remote::CollectorArgs,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue grants.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// List grants: who, how long is left, how many sessions.
    Grants(grant::ListArgs),
    /// Run a command as a new session under a grant (replaces this process).
    Exec(exec::ExecArgs),
    /// Make an existing process (and its future children) a session under a grant.
    Attach(exec::AttachArgs),
    /// List sessions and their processes.
    Sessions(sessions::SessionsArgs),
    /// Stream what sessions do, live.
    Watch(watch::WatchArgs),
    /// Kill a session's process tree, or every session of a grant.
    Kill(kill::KillArgs),
    /// Revoke a grant and kill every session under it.
    Revoke(kill::RevokeArgs),
    /// Show the agent's health, counters and kernel features.
    Status(status::StatusArgs),
    /// What a session did: commands, files written, hosts and bytes, violations, kills.
    Report(report::ReportArgs),
    /// Search the collector's log: events by host, grant, session, subject, kind and time.
    Query(query::QueryArgs),
    /// List the agents the collector knows, connected or not.
    Agents(agents::AgentsArgs),
    /// Check the audit log (the collector's with --collector, else the agent's).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Make a development CA and mTLS certificates (collector, agents, people).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Check policy files locally; push, list, show and retire the collector's policy catalogue.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Start an SSH login as a session, let in by a signed grant token (sshd ForceCommand).
    Login(login::LoginArgs),
    /// Development signer for grant tokens (keygen, sign); the collector signs in production.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Ask the collector for a grant: a catalogue policy, a TTL and a reason; prints the request id.
    Request(approvals::RequestArgs),
    /// List grant requests (pending ones; --all for every one); fetch your token with --id R --token-out FILE.
    Requests(approvals::RequestsArgs),
    /// Approve someone else's grant request (needs the policy's approver role).
    Approve(approvals::ApproveArgs),
    /// Deny a grant request, with a reason.
    Deny(approvals::DenyArgs),
    /// Ask for more time on a grant: a new request that needs approval again.
    Extend(approvals::ExtendArgs),
    /// Serve the web console on a local address, acting as you (the agent, or --collector with your certificate).
    Console(console::ConsoleArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) for warrant.
    Completions(docs::CompletionsArgs),
}

fn main() -> ExitCode {
    if let Some(code) = docs::packaging() {
        return code;
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        // exec manages its own single-threaded runtime, which it drops before exec.
        Command::Exec(args) => exec::run(&cli.socket, args),
        Command::Login(args) => login::run(&cli.socket, args),
        Command::Completions(args) => docs::completions(Cli::command(), args, &mut io::stdout().lock()),
        command => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(dispatch(&cli.socket, &cli.remote, command))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => report(&err),
    }
}

async fn dispatch(socket: &Path, remote: &remote::CollectorArgs, command: &Command) -> Result<u8> {
    let mut out = io::stdout().lock();
    let out = &mut out;
    match command {
        Command::Grant(grant::GrantCommand::Issue(args)) => grant::issue(socket, args, out).await,
        Command::Grant(grant::GrantCommand::Update(args)) => grant::update(socket, args, out).await,
        Command::Grant(grant::GrantCommand::List(args)) | Command::Grants(args) => {
            grant::list(socket, args, out).await
        }
        Command::Exec(args) => exec::run(socket, args),
        Command::Attach(args) => exec::attach(socket, args, out).await,
        Command::Sessions(args) => sessions::run(socket, remote, args, out).await,
        Command::Watch(args) => watch::run(socket, remote, args, out).await,
        Command::Kill(args) => kill::kill(socket, remote, args, out).await,
        Command::Revoke(args) => kill::revoke(socket, remote, args, out).await,
        Command::Status(args) => status::run(socket, args, out).await,
        Command::Report(args) => report::run(socket, remote, args, out).await,
        Command::Query(args) => query::run(remote, args, out).await,
        Command::Agents(args) => agents::run(remote, args, out).await,
        Command::Audit(audit::AuditCommand::Verify(args)) => audit::verify(socket, remote, args, out).await,
        Command::Certs(certs::CertsCommand::Init(args)) => certs::init(args, out),
        Command::Certs(certs::CertsCommand::Issue(args)) => certs::issue(args, out),
        Command::Policy(policy::PolicyCommand::Check(args)) => policy::check(args, out, &mut io::stderr().lock()),
        Command::Policy(policy::PolicyCommand::Push(args)) => policy::push(remote, args, out, &mut io::stderr().lock()).await,
        Command::Policy(policy::PolicyCommand::List(args)) => policy::list(remote, args, out).await,
        Command::Policy(policy::PolicyCommand::Show(args)) => policy::show(remote, args, out).await,
        Command::Policy(policy::PolicyCommand::Retire(args)) => policy::retire(remote, args, out).await,
        Command::Login(args) => login::run(socket, args),
        Command::Token(token::TokenCommand::Keygen(args)) => token::keygen(args, out),
        Command::Token(token::TokenCommand::Sign(args)) => token::sign(args, out),
        Command::Token(token::TokenCommand::Compact(args)) => token::compact(args, out),
        Command::Request(args) => approvals::request(remote, args, out).await,
        Command::Requests(args) => approvals::list(remote, args, out).await,
        Command::Approve(args) => approvals::approve(remote, args, out).await,
        Command::Deny(args) => approvals::deny(remote, args, out).await,
        Command::Extend(args) => approvals::extend(remote, args, out).await,
        Command::Console(args) => console::run(socket, remote, args, out).await,
        Command::Completions(args) => docs::completions(Cli::command(), args, out),
    }
}

/// Prints `warrant: <error>` and picks the exit status. A closed stdout (the
/// reader went away) is not an error.
fn report(err: &anyhow::Error) -> ExitCode {
    let broken_pipe = err
        .chain()
        .any(|e| e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe));
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    let code = err.chain().find_map(|e| e.downcast_ref::<Fail>()).map_or(2, |f| f.code);
    let _ = writeln!(io::stderr(), "warrant: {err:#}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("warrant").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn socket_flag_is_global_with_default() {
        // The env var may be set by whoever runs the tests.
        let cli = parse(&["status", "--socket", "/tmp/a.sock"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/a.sock"));
        let cli = parse(&["--socket", "/tmp/b.sock", "grants"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/b.sock"));
        if std::env::var_os("WARRANT_SOCKET").is_none() {
            assert_eq!(parse(&["status"]).unwrap().socket, PathBuf::from("/run/warrant/agent.sock"));
        }
    }

    #[test]
    fn grant_issue() {
        let cli = parse(&["grant", "issue", "--subject", "alice", "--ttl", "2m", "--reason", "INC-42"]).unwrap();
        let Command::Grant(grant::GrantCommand::Issue(a)) = cli.command else { panic!("{cli:?}") };
        assert_eq!((a.subject.as_str(), a.ttl.as_str(), a.reason.as_str()), ("alice", "2m", "INC-42"));
        let a = parse(&["grant", "issue", "--subject", "bob", "--ttl", "90s"]).unwrap();
        assert!(matches!(a.command, Command::Grant(grant::GrantCommand::Issue(ref a)) if a.reason.is_empty()));
        assert!(parse(&["grant", "issue", "--ttl", "2m"]).is_err(), "--subject is required");
        assert!(parse(&["grant", "issue", "--subject", "x"]).is_err(), "--ttl is required");
    }

    #[test]
    fn grants() {
        let Command::Grants(a) = parse(&["grants", "--all", "--json"]).unwrap().command else { panic!() };
        assert!(a.all && a.json);
        let Command::Grant(grant::GrantCommand::List(a)) = parse(&["grant", "list"]).unwrap().command else {
            panic!()
        };
        assert!(!a.all && !a.json);
    }

    #[test]
    fn exec_takes_the_rest_as_the_command() {
        let Command::Exec(a) = parse(&["exec", "--grant", "g-1", "--", "bash", "-c", "id"]).unwrap().command else {
            panic!()
        };
        assert_eq!(a.grant.as_deref(), Some("g-1"));
        assert_eq!(a.command, ["bash", "-c", "id"]);
        let Command::Exec(a) = parse(&["exec", "--grant", "g-1", "ls", "-la", "--color"]).unwrap().command else {
            panic!()
        };
        assert_eq!(a.command, ["ls", "-la", "--color"]);
        assert!(parse(&["exec", "--grant", "g-1"]).is_err(), "a command is required");
        assert!(parse(&["exec", "bash"]).is_err(), "--grant or --token is required");
        let Command::Exec(a) = parse(&["exec", "--token", "t.wgt", "--", "id"]).unwrap().command else { panic!() };
        assert_eq!((a.grant, a.token), (None, Some(PathBuf::from("t.wgt"))));
        assert!(parse(&["exec", "--token", "t", "--grant", "g-1", "id"]).is_err(), "one or the other");
    }

    #[test]
    fn attach() {
        let Command::Attach(a) = parse(&["attach", "--grant", "g-1", "--pid", "42"]).unwrap().command else {
            panic!()
        };
        assert_eq!((a.grant.as_str(), a.pid), ("g-1", 42));
        assert!(parse(&["attach", "--grant", "g-1", "--pid", "0"]).is_err());
        assert!(parse(&["attach", "--grant", "g-1", "--pid", "x"]).is_err());
    }

    #[test]
    fn sessions() {
        let Command::Sessions(a) = parse(&["sessions", "--all", "--json"]).unwrap().command else { panic!() };
        assert!(a.all && a.json);
    }

    #[test]
    fn watch_kinds_are_comma_separated() {
        let cli = parse(&["watch", "--session", "s-1", "--grant", "g-1", "--kind", "exec,file,net", "--json"]).unwrap();
        let Command::Watch(a) = cli.command else { panic!() };
        assert_eq!((a.filter.session.as_deref(), a.filter.grant.as_deref()), (Some("s-1"), Some("g-1")));
        assert_eq!(a.filter.kind, ["exec", "file", "net"]);
        assert!(a.json);
        let Command::Watch(a) = parse(&["watch"]).unwrap().command else { panic!() };
        assert!(a.filter.kind.is_empty() && a.filter.session.is_none());
    }

    #[test]
    fn kill_needs_exactly_one_target() {
        let Command::Kill(a) = parse(&["kill", "--session", "s-1", "--reason", "done"]).unwrap().command else {
            panic!()
        };
        assert_eq!((a.session.as_deref(), a.reason.as_str()), (Some("s-1"), "done"));
        let Command::Kill(a) = parse(&["kill", "--grant", "g-1", "--json"]).unwrap().command else { panic!() };
        assert_eq!(a.grant.as_deref(), Some("g-1"));
        assert!(a.json);
        assert!(parse(&["kill"]).is_err());
        assert!(parse(&["kill", "--session", "s-1", "--grant", "g-1"]).is_err());
    }

    #[test]
    fn revoke() {
        let Command::Revoke(a) = parse(&["revoke", "--grant", "g-1", "--reason", "INC closed"]).unwrap().command else {
            panic!()
        };
        assert_eq!((a.grant.as_str(), a.reason.as_str()), ("g-1", "INC closed"));
        assert!(parse(&["revoke"]).is_err());
    }

    #[test]
    fn status() {
        let Command::Status(a) = parse(&["status", "--json"]).unwrap().command else { panic!() };
        assert!(a.json);
    }

    #[test]
    fn policy_check_takes_files() {
        let cli = parse(&["policy", "check", "a.yaml", "b.yaml", "--json"]).unwrap();
        let Command::Policy(policy::PolicyCommand::Check(a)) = cli.command else { panic!() };
        assert_eq!(a.files, [PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
        assert!(a.json);
        let Command::Policy(policy::PolicyCommand::Check(a)) = parse(&["policy", "check", "a.yaml"]).unwrap().command
        else {
            panic!()
        };
        assert!(!a.json);
        assert!(parse(&["policy", "check"]).is_err(), "a file is required");
        assert!(parse(&["policy"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn collector_flags_are_global() {
        let cli = parse(&["--collector", "https://c:7443", "kill", "--session", "s-1", "--ca", "ca.pem"]).unwrap();
        assert_eq!(cli.remote.collector.as_deref(), Some("https://c:7443"));
        assert_eq!(cli.remote.ca, Some(PathBuf::from("ca.pem")));
        let cli = parse(&["watch", "--collector", "https://c:7443", "--host", "db-1", "--subject", "alice", "--since", "10m"])
            .unwrap();
        let Command::Watch(a) = cli.command else { panic!() };
        assert_eq!(
            (a.filter.host.as_deref(), a.filter.subject.as_deref(), a.since.as_deref()),
            (Some("db-1"), Some("alice"), Some("10m"))
        );
    }

    #[test]
    fn query_agents_audit_certs() {
        let cli = parse(&["query", "--grant", "g-1", "--from", "1h", "--to", "10m", "--limit", "5", "--kind", "exec", "--json"])
            .unwrap();
        let Command::Query(a) = cli.command else { panic!() };
        assert_eq!(
            (a.filter.grant.as_deref(), a.from.as_deref(), a.to.as_deref(), a.limit),
            (Some("g-1"), Some("1h"), Some("10m"), 5)
        );
        assert_eq!(a.filter.kind, ["exec"]);
        assert!(matches!(parse(&["agents", "--json"]).unwrap().command, Command::Agents(a) if a.json));
        assert!(matches!(parse(&["audit", "verify"]).unwrap().command, Command::Audit(audit::AuditCommand::Verify(_))));
        let cli = parse(&["certs", "issue", "--dir", "d", "--name", "bob", "--role-hint", "responder"]).unwrap();
        let Command::Certs(certs::CertsCommand::Issue(a)) = cli.command else { panic!() };
        assert_eq!((a.name.as_str(), a.role_hint), ("bob", certs::RoleHint::Responder));
        assert!(parse(&["certs", "issue", "--dir", "d", "--name", "x", "--role-hint", "root"]).is_err());
        assert!(parse(&["certs", "init"]).is_err(), "--dir is required");
    }

    #[test]
    fn login_and_token_commands() {
        let Command::Login(a) = parse(&["login"]).unwrap().command else { panic!() };
        assert!(a.token_file.is_none());
        let Command::Login(a) = parse(&["login", "--token-file", "/t"]).unwrap().command else { panic!() };
        assert_eq!(a.token_file, Some(PathBuf::from("/t")));
        let Command::Token(token::TokenCommand::Keygen(a)) = parse(&["token", "keygen", "--out", "k"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(a.out, PathBuf::from("k"));
        let cli = parse(&[
            "token", "sign", "--key", "k", "--subject", "user:alice", "--host", "db-*", "--ttl", "5m",
            "--approver", "bob", "--approver", "carol", "--out", "t",
        ])
        .unwrap();
        let Command::Token(token::TokenCommand::Sign(a)) = cli.command else { panic!() };
        assert_eq!(a.approvers, ["bob", "carol"]);
        assert_eq!((a.host.as_str(), a.ttl.as_secs()), ("db-*", 300));
        assert!(parse(&["token", "sign", "--key", "k", "--host", "h"]).is_err(), "--subject is required");
        assert!(parse(&["token", "compact"]).is_err(), "a file is required");
    }

    #[test]
    fn approval_flow_commands() {
        let cli = parse(&["request", "--policy", "db-debug", "--ttl", "30m", "--reason", "INC-42", "--for-agent", "claude"]).unwrap();
        let Command::Request(a) = cli.command else { panic!() };
        assert_eq!((a.ttl.as_secs(), a.host.as_str(), a.for_agent.as_deref(), a.wait), (1800, "*", Some("claude"), false));
        assert_eq!(a.policy, "db-debug");
        let Command::Policy(policy::PolicyCommand::Push(a)) = parse(&["policy", "push", "a.yaml", "b.yaml"]).unwrap().command else { panic!() };
        assert_eq!(a.files.len(), 2);
        assert!(parse(&["policy", "push"]).is_err(), "a file is required");
        let Command::Policy(policy::PolicyCommand::List(a)) = parse(&["policy", "list", "--all", "--json"]).unwrap().command else { panic!() };
        assert!(a.all && a.json);
        let Command::Policy(policy::PolicyCommand::Show(a)) = parse(&["policy", "show", "db@sha256:ab"]).unwrap().command else { panic!() };
        assert_eq!(policy::split_ref(&a.policy), ("db".to_owned(), "sha256:ab".to_owned()));
        let Command::Policy(policy::PolicyCommand::Retire(a)) = parse(&["policy", "retire", "db", "--reason", "replaced"]).unwrap().command else { panic!() };
        assert_eq!((a.name.as_str(), a.reason.as_str()), ("db", "replaced"));
        assert!(parse(&["policy", "retire"]).is_err(), "a name is required");
        let cli = parse(&["request", "--policy", "p", "--ttl", "5m", "--reason", "r", "--host", "db-*", "--wait", "--token-out", "t"]).unwrap();
        let Command::Request(a) = cli.command else { panic!() };
        assert_eq!((a.host.as_str(), a.wait, a.token_out), ("db-*", true, Some(PathBuf::from("t"))));
        assert!(parse(&["request", "--policy", "p", "--ttl", "5m"]).is_err(), "--reason is required");
        assert!(parse(&["request", "--policy", "p", "--ttl", "soon", "--reason", "r"]).is_err());
        assert!(parse(&["request", "--policy", "p", "--ttl", "5m", "--reason", "r", "--token-out", "t"]).is_err(), "--token-out needs --wait");
        let Command::Requests(a) = parse(&["requests", "--all", "--json"]).unwrap().command else { panic!() };
        assert!(a.all && a.json && a.id.is_none());
        let Command::Requests(a) = parse(&["requests", "--id", "r-1", "--token-out", "t"]).unwrap().command else { panic!() };
        assert_eq!(a.id.as_deref(), Some("r-1"));
        assert!(parse(&["requests", "--token-out", "t"]).is_err(), "--token-out needs --id");
        let Command::Approve(a) = parse(&["approve", "r-1"]).unwrap().command else { panic!() };
        assert_eq!(a.request, "r-1");
        let Command::Deny(a) = parse(&["deny", "r-1", "--reason", "no"]).unwrap().command else { panic!() };
        assert_eq!(a.reason, "no");
        assert!(parse(&["deny", "r-1"]).is_err(), "--reason is required");
        let Command::Extend(a) = parse(&["extend", "g-1", "--by", "15m"]).unwrap().command else { panic!() };
        assert_eq!((a.grant.as_str(), a.by.as_secs()), ("g-1", 900));
    }

    #[test]
    fn exit_status_policy() {
        assert_eq!(report(&anyhow::anyhow!("unknown grant g-12")), ExitCode::from(2));
        let fail = Fail { code: 127, message: "command not found: x".into() };
        assert_eq!(report(&fail.into()), ExitCode::from(127));
        let pipe = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("cannot write");
        assert_eq!(report(&pipe), ExitCode::SUCCESS);
    }
}
