//! The event filter `watch`, `query` and `report` share: one set of flags
//! (`--host`, `--subject`, `--grant`, `--session`, `--kind`) flattened into each
//! command, checked here before anything is connected so a typo fails at once and
//! names the flag, and the times those commands take (`--since`, `--from`, `--to`).
//!
//! The kinds and their shorthands come from `warrant_audit::kinds` (`KIND_NAMES`,
//! `Shorthand`), the one table the agent and the collector expand them with, so
//! `--help`, the error message and the filtering agree.

use anyhow::{Result, bail};
use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_proto::EventFilter;
use warrant_audit::kinds::{KIND_NAMES, expand_kind, kinds_help};

use crate::output::sanitize;

/// Which events: every flag given must match (none given: every event). Under
/// the `Filter` heading in `--help`, with the command's own time flags after them.
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
#[command(next_help_heading = "Filter")]
pub struct FilterArgs {
    /// Only events of this host (with --collector).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Only events of this grant subject (with --collector).
    #[arg(long, value_name = "NAME")]
    pub subject: Option<String>,
    /// Only events of this grant's sessions (g-…).
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// Only this session's events (s-…).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Only these kinds, comma-separated (the list is `kinds_help`'s).
    #[arg(long, value_name = "KINDS", value_delimiter = ',', help = kind_help())]
    pub kind: Vec<String>,
}

/// `--kind`'s help: every kind and shorthand, from the table the filtering uses.
fn kind_help() -> String {
    format!("Only these kinds, comma-separated: {}", kinds_help())
}

impl FilterArgs {
    /// The filter to send, its kinds checked: an unknown kind is an error naming it.
    pub fn event_filter(&self) -> Result<EventFilter> {
        Ok(EventFilter {
            host: self.host.clone().unwrap_or_default(),
            agent_id: String::new(),
            grant: self.grant.clone().unwrap_or_default(),
            session: self.session.clone().unwrap_or_default(),
            subject: self.subject.clone().unwrap_or_default(),
            kinds: kinds(&self.kind)?,
        })
    }

    /// The flags given that only a collector can apply (it knows every host and
    /// each grant's subject; the local agent filters by session, grant and kind).
    pub fn collector_only(&self) -> Vec<&'static str> {
        [("--host", &self.host), ("--subject", &self.subject)]
            .into_iter()
            .filter_map(|(flag, v)| v.is_some().then_some(flag))
            .collect()
    }
}

/// `--kind` values trimmed, empty ones dropped, each a kind or a shorthand.
pub fn kinds(given: &[String]) -> Result<Vec<String>> {
    let kinds: Vec<String> = given
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    check_kinds(&kinds)?;
    Ok(kinds)
}

/// Checks kind names (the console's `kinds` too): an unknown one is an error that
/// names it and lists the valid ones.
pub fn check_kinds(kinds: &[String]) -> Result<()> {
    for k in kinds.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
        if !KIND_NAMES.contains(&k) && expand_kind(k).is_empty() {
            bail!(
                "invalid --kind {}: no such event kind\n\nValid kinds: {}.",
                sanitize(k),
                kinds_help()
            );
        }
    }
    Ok(())
}

/// Refuses `flags` (given without `--collector`) with `hint`; nothing given is fine.
pub fn need_collector(flags: &[&str], hint: &str) -> Result<()> {
    let named = match flags {
        [] => return Ok(()),
        [one] => format!("{one} needs"),
        [first @ .., last] => format!("{} and {last} need", first.join(", ")),
    };
    bail!("{named} --collector\n\n{hint}")
}

/// A point in time given to `flag`: a duration ago (`10m`, `2h`, `7d`) or an RFC
/// 3339 time, as Unix nanoseconds.
pub fn parse_time(s: &str, flag: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(ago) = humantime::parse_duration(s) {
        let ago = i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX);
        return Ok(crate::output::now_unix_ns().saturating_sub(ago));
    }
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Ok(i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)),
        Err(_) => bail!(
            "invalid {flag} {}: not a duration or a time\n\n\
             Use a duration ago like 10m, 2h or 7d, or a time like 2026-11-23T14:00:00Z.",
            sanitize(s)
        ),
    }
}

/// `--from` and `--to` as Unix nanoseconds (0: the log's start, now), in order.
pub fn range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64)> {
    let from = from
        .map(|s| parse_time(s, "--from"))
        .transpose()?
        .unwrap_or(0);
    let to = to.map(|s| parse_time(s, "--to")).transpose()?.unwrap_or(0);
    if from != 0 && to != 0 && from > to {
        bail!("invalid time range: --from is after --to");
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};
    use warrant_audit::kinds::Shorthand;

    use super::*;

    /// The filter flags alone, as a command flattens them.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        filter: FilterArgs,
    }

    fn parse(args: &[&str]) -> FilterArgs {
        Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .filter
    }

    #[test]
    fn kinds_and_shorthands_parse_comma_separated_and_repeated() {
        let f = parse(&[
            "--kind",
            "exec, net,",
            "--kind",
            "file,process",
            "--grant",
            "g-1",
        ]);
        assert_eq!(f.kind, ["exec", " net", "", "file", "process"]);
        let sent = f.event_filter().unwrap();
        assert_eq!(
            sent.kinds,
            ["exec", "net", "file", "process"],
            "trimmed, empties dropped, shorthands kept"
        );
        assert_eq!(
            (
                sent.grant.as_str(),
                sent.session.as_str(),
                sent.host.as_str()
            ),
            ("g-1", "", "")
        );
        for (short, kinds) in Shorthand::ALL.iter().map(|s| (s.name(), s.kinds())) {
            assert!(check_kinds(&[short.to_owned()]).is_ok(), "{short}");
            assert!(
                kinds
                    .iter()
                    .all(|k| check_kinds(&[(*k).to_owned()]).is_ok()),
                "{short}: {kinds:?}"
            );
        }
        assert_eq!(parse(&[]).event_filter().unwrap(), EventFilter::default());
    }

    #[test]
    fn a_bad_kind_is_named_with_the_valid_ones() {
        let f = parse(&["--kind", "exec,exce"]);
        let e = f.event_filter().unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --kind exce: no such event kind\n\nValid kinds: exec, exec_failed, exit,"),
            "{e}"
        );
        assert!(
            e.contains("net (connect, bind, listen, accept, datagram, socket_close)"),
            "{e}"
        );
        let e = check_kinds(&["\x1b[2J".into()]).unwrap_err().to_string();
        assert!(e.starts_with("invalid --kind \\x1b[2J:"), "escaped: {e}");
    }

    /// What `--help` says the shorthands are is what the filtering expands.
    #[test]
    fn kind_help_lists_the_shorthands_the_code_expands() {
        let cmd = Flags::command();
        let kind = cmd.get_arguments().find(|a| a.get_id() == "kind").unwrap();
        let help = kind.get_help().unwrap().to_string();
        for (short, kinds) in Shorthand::ALL.iter().map(|s| (s.name(), s.kinds())) {
            assert!(
                help.contains(&format!("{short} ({})", kinds.join(", "))),
                "{help}"
            );
            assert_eq!(expand_kind(short), kinds);
        }
        for name in KIND_NAMES {
            assert!(help.contains(name), "{name}: {help}");
        }
        // watch and query take the same flag, with the same help.
        let mut cli = crate::Cli::command();
        for sub in ["watch", "query"] {
            let sub = cli.find_subcommand_mut(sub).unwrap();
            let arg = sub.get_arguments().find(|a| a.get_id() == "kind").unwrap();
            assert_eq!(arg.get_help().unwrap().to_string(), help);
        }
    }

    #[test]
    fn host_and_subject_need_a_collector() {
        assert!(
            parse(&["--session", "s-1", "--kind", "exec"])
                .collector_only()
                .is_empty()
        );
        let f = parse(&["--host", "db-1", "--subject", "alice"]);
        assert_eq!(f.collector_only(), ["--host", "--subject"]);
        assert!(need_collector(&[], "hint").is_ok());
        let e = need_collector(&["--host"], "The local agent knows this host only.")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--host needs --collector\n\nThe local agent knows this host only."
        );
        let e = need_collector(&["--host", "--subject", "--since"], "h")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--host, --subject and --since need --collector\n\nh");
        let sent = f.event_filter().unwrap();
        assert_eq!(
            (sent.host.as_str(), sent.subject.as_str()),
            ("db-1", "alice")
        );
    }

    #[test]
    fn times_are_durations_ago_or_rfc3339() {
        let t = parse_time("10m", "--since").unwrap();
        let want = crate::output::now_unix_ns() - 600_000_000_000;
        assert!((want - t).abs() < 5_000_000_000, "{t}");
        assert_eq!(
            parse_time("2026-11-23T14:00:00Z", "--from").unwrap(),
            1_795_442_400_000_000_000
        );
        let e = parse_time("yesterday", "--from").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid --from yesterday: not a duration or a time"),
            "{e}"
        );
    }

    #[test]
    fn ranges_are_in_order() {
        assert_eq!(range(None, None).unwrap(), (0, 0));
        let (from, to) = range(Some("2h"), Some("1h")).unwrap();
        assert!(from < to);
        let e = range(Some("1h"), Some("2h")).unwrap_err().to_string();
        assert_eq!(e, "invalid time range: --from is after --to");
        let e = range(Some("1h"), Some("soon")).unwrap_err().to_string();
        assert!(e.starts_with("invalid --to soon:"), "{e}");
    }
}
