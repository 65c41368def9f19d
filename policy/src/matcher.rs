//! The decision functions: which rule applies to an exec, an open or a connect, and so
//! what happens.
//!
//! This is the reference semantics. The agent compiles policies into kernel structures
//! (Landlock rules, LPM tries keyed by prefix with port lists) that must decide exactly
//! as these functions do, and uses them itself to label events with the rule that
//! applied. They scan the rule lists linearly: policies hold tens of rules, and the hot
//! path is in the kernel, not here.
//!
//! Semantics, pinned by the tests and property tests below:
//!
//! - **exec**: the rules whose [`PathPattern`](crate::PathPattern) matches the
//!   executable's path (itself or under it, at a `/` boundary); the longest path wins.
//! - **files**: the rules whose path matches and whose access covers the open (a `read`
//!   rule applies to reads, `write` to writes, `any` to both); the longest path wins,
//!   then a rule naming the exact access beats an `any` rule. An open for reading *and*
//!   writing ([`Access::Any`]) is decided as a read and as a write, and the stricter
//!   action (see [`Action`]'s order) wins, so `read: allow` cannot let a write through.
//! - **connect**: the rules whose CIDR contains the address (IPv4-mapped IPv6 addresses
//!   count as IPv4) and whose ports contain the port (no ports: every port); the longest
//!   prefix wins, then a rule with ports beats one without.
//! - Nothing matches: the policy's `default`, and [`Decision::rule`] is `None`.
//! - A tie the parser would have rejected (two rules for one path) goes to the rule
//!   listed first, so even a hand-built policy decides deterministically.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::model::{Access, Action, Policy};

/// Which list of a policy a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleList {
    /// `exec:`.
    Exec,
    /// `files:`.
    Files,
    /// `network:`.
    Network,
    /// `unix:`.
    Unix,
    /// `bind:`.
    Bind,
    /// `exec: {writable: deny}`: the file may be written by the session, so it may
    /// not be executed (a list of one, index 0).
    ExecWritable,
}

impl RuleList {
    /// The list's key in a policy file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RuleList::Exec => "exec",
            RuleList::Files => "files",
            RuleList::Network => "network",
            RuleList::Unix => "unix",
            RuleList::Bind => "bind",
            RuleList::ExecWritable => "exec.writable",
        }
    }
}

/// A rule of a policy, by position: what violation events name. Displays as
/// `files[1]`; [`Policy::describe`] gives the long form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleRef {
    /// The list the rule is in.
    pub list: RuleList,
    /// Its 0-based index in that list, as in the policy file.
    pub index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.list {
            RuleList::ExecWritable => f.write_str(self.list.as_str()),
            list => write!(f, "{}[{}]", list.as_str(), self.index),
        }
    }
}

impl RuleRef {
    /// The rule as events name it: `files[3]` (1-based, as people count), or
    /// `exec.writable`.
    #[must_use]
    pub fn label(&self) -> String {
        match self.list {
            RuleList::ExecWritable => self.list.as_str().to_owned(),
            list => format!("{}[{}]", list.as_str(), self.index + 1),
        }
    }
}

/// What happens to one exec, open or connect, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What happens.
    pub action: Action,
    /// The rule that decided; `None` when no rule matched and the default applied.
    pub rule: Option<RuleRef>,
}

impl Decision {
    /// Whether the policy's default decided (no rule matched).
    #[must_use]
    pub fn is_default(&self) -> bool {
        self.rule.is_none()
    }
}

impl Policy {
    /// Decides an exec of the executable at `path` (absolute and canonical, as the kernel
    /// reports it).
    #[must_use]
    pub fn decide_exec(&self, path: impl AsRef<Path>) -> Decision {
        let path = path.as_ref();
        let best = best(self.exec.iter().map(|r| r.path.matches(path).then(|| r.path.specificity())));
        let d = self.decision(RuleList::Exec, best, |i| self.exec[i].action);
        // W^X: what the session may write it may not run, whatever the exec rule.
        if !self.confinement.writable_exec && d.action.permits() && self.decide_file(path, Access::Write).action.permits() {
            return Decision { action: Action::Deny, rule: Some(RuleRef { list: RuleList::ExecWritable, index: 0 }) };
        }
        d
    }

    /// Decides an open of the file at `path` (absolute and canonical) for `access`:
    /// [`Access::Read`], [`Access::Write`], or [`Access::Any`] for both at once.
    #[must_use]
    pub fn decide_file(&self, path: impl AsRef<Path>, access: Access) -> Decision {
        let path = path.as_ref();
        if access == Access::Any {
            let read = self.decide_file(path, Access::Read);
            let write = self.decide_file(path, Access::Write);
            // On equal strictness the write side names the rule: writing is what a
            // read-write open adds.
            return if read.action > write.action { read } else { write };
        }
        let best = best(self.files.iter().map(|r| {
            (r.access.covers(access) && r.path.matches(path)).then(|| (r.path.specificity(), r.access == access))
        }));
        self.decision(RuleList::Files, best, |i| self.files[i].action)
    }

    /// Decides a connection (or a datagram sent) to `ip`:`port`.
    #[must_use]
    pub fn decide_connect(&self, ip: IpAddr, port: u16) -> Decision {
        let best = best(self.network.iter().map(|r| {
            let ports = r.ports.as_ref().is_none_or(|p| p.contains(port));
            (ports && r.cidr.contains(ip)).then(|| (r.cidr.prefix_len(), r.ports.is_some()))
        }));
        self.decision(RuleList::Network, best, |i| self.network[i].action)
    }

    /// Decides a connect (or datagram) to the unix socket name `name` (`sun_path`
    /// bytes, an abstract name with its leading NUL): the longest matching rule, or
    /// allow when none matches (the policy's `default` is not about unix sockets).
    #[must_use]
    pub fn decide_unix(&self, name: &[u8]) -> Decision {
        let best = best(self.unix.iter().map(|r| r.name.matches(name).then(|| r.name.key_bytes().len())));
        match best {
            Some(index) => Decision { action: self.unix[index].action, rule: Some(RuleRef { list: RuleList::Unix, index }) },
            None => Decision { action: Action::Allow, rule: None },
        }
    }

    /// The long form of a rule, for events and messages:
    /// `files[1] /etc/shadow any -> kill-session`; `None` when there is no such rule.
    #[must_use]
    pub fn describe(&self, rule: RuleRef) -> Option<String> {
        let body = match rule.list {
            RuleList::Exec => self.exec.get(rule.index)?.to_string(),
            RuleList::Files => self.files.get(rule.index)?.to_string(),
            RuleList::Network => self.network.get(rule.index)?.to_string(),
            RuleList::Unix => self.unix.get(rule.index)?.to_string(),
            RuleList::Bind => self.bind.get(rule.index)?.to_string(),
            RuleList::ExecWritable => "deny: the session may write the file, so it may not run it".to_owned(),
        };
        Some(format!("{rule} {body}"))
    }

    fn decision(&self, list: RuleList, best: Option<usize>, action: impl Fn(usize) -> Action) -> Decision {
        match best {
            Some(index) => Decision { action: action(index), rule: Some(RuleRef { list, index }) },
            None => Decision { action: self.default, rule: None },
        }
    }
}

/// The index of the highest `Some` rank; the first of equals.
fn best<K: Ord>(ranks: impl Iterator<Item = Option<K>>) -> Option<usize> {
    let mut best: Option<(usize, K)> = None;
    for (i, rank) in ranks.enumerate() {
        if let Some(rank) = rank
            && best.as_ref().is_none_or(|(_, b)| rank > *b)
        {
            best = Some((i, rank));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{Cidr, ExecRule, ExpiryAction, FileRule, NetRule, PathPattern, PortSet};

    fn db_debug() -> Policy {
        Policy::from_yaml(include_str!("../examples/db-debug.yaml"), "db-debug.yaml").unwrap()
    }

    fn empty(default: Action) -> Policy {
        Policy {
            name: "t".into(),
            max_ttl: Duration::from_secs(60),
            default,
            exec: vec![],
            files: vec![],
            network: vec![],
            bind: vec![],
            unix: vec![],
            on_expiry: ExpiryAction::KillSession,
            approval: crate::model::Approval::default(),
            confinement: crate::model::Confinement::default(),
        }
    }

    fn rule(list: RuleList, index: usize) -> Option<RuleRef> {
        Some(RuleRef { list, index })
    }

    #[test]
    fn example_decisions() {
        let p = db_debug();
        let d = p.decide_exec("/usr/bin/curl");
        assert_eq!((d.action, d.rule), (Action::Kill, rule(RuleList::Exec, 1)));
        assert_eq!(p.decide_exec("/usr/bin/psql").action, Action::Allow);
        assert!(p.decide_exec("/usr/bin/psql2").is_default());

        let d = p.decide_file("/etc/shadow", Access::Read);
        assert_eq!((d.action, d.rule), (Action::KillSession, rule(RuleList::Files, 1)));
        assert_eq!(p.describe(d.rule.unwrap()).unwrap(), "files[1] /etc/shadow any -> kill-session");
        assert_eq!(p.decide_file("/var/lib/postgresql/16/main/pg_hba.conf", Access::Write).action, Action::Deny);
        assert_eq!(p.decide_file("/var/lib/postgresql", Access::Write).action, Action::Deny, "the dir itself");
        assert!(p.decide_file("/var/lib/postgresql/x", Access::Read).is_default(), "a write rule");
        assert_eq!(p.decide_file("/var/lib/postgresql/x", Access::Any).action, Action::Deny, "read-write");
        assert!(p.decide_file("/var/lib/postgresql2/x", Access::Write).is_default());

        let d = p.decide_connect("10.1.2.3".parse().unwrap(), 5432);
        assert_eq!((d.action, d.rule), (Action::Allow, rule(RuleList::Network, 0)));
        let d = p.decide_connect("10.1.2.3".parse().unwrap(), 22);
        assert_eq!((d.action, d.rule), (Action::Drop, rule(RuleList::Network, 1)));
        assert_eq!(p.describe(d.rule.unwrap()).unwrap(), "network[1] 0.0.0.0/0 -> drop");
        assert_eq!(p.decide_connect("::ffff:10.1.2.3".parse().unwrap(), 5432).action, Action::Allow);
        assert!(p.decide_connect("2001:db8::1".parse().unwrap(), 5432).is_default(), "no IPv6 rule");
        assert_eq!(p.describe(RuleRef { list: RuleList::Exec, index: 0 }).unwrap(), "exec[0] /usr/bin/psql -> allow");
        assert_eq!(p.describe(RuleRef { list: RuleList::Exec, index: 9 }), None);
    }

    #[test]
    fn file_access_specificity() {
        let mut p = empty(Action::Deny);
        p.files = vec![
            FileRule { path: PathPattern::new("/etc/").unwrap(), access: Access::Any, action: Action::Log },
            FileRule { path: PathPattern::new("/etc/").unwrap(), access: Access::Read, action: Action::Allow },
            FileRule { path: PathPattern::new("/etc/ssl/").unwrap(), access: Access::Write, action: Action::Kill },
        ];
        assert_eq!(p.decide_file("/etc/hosts", Access::Read).rule, rule(RuleList::Files, 1), "exact access wins");
        assert_eq!(p.decide_file("/etc/hosts", Access::Write).rule, rule(RuleList::Files, 0));
        assert_eq!(p.decide_file("/etc/ssl/x", Access::Read).rule, rule(RuleList::Files, 1), "write rule skipped");
        assert_eq!(p.decide_file("/etc/ssl/x", Access::Write).rule, rule(RuleList::Files, 2), "longer path wins");
        let d = p.decide_file("/etc/hosts", Access::Any);
        assert_eq!((d.action, d.rule), (Action::Log, rule(RuleList::Files, 0)), "stricter of read and write");
        let d = p.decide_file("/tmp/x", Access::Any);
        assert_eq!((d.action, d.rule), (Action::Deny, None));
        // Default deny, read allowed: a read-write open is still denied by the default.
        let mut p = empty(Action::Deny);
        p.files = vec![FileRule { path: PathPattern::new("/").unwrap(), access: Access::Read, action: Action::Allow }];
        assert_eq!(p.decide_file("/etc/hosts", Access::Any), Decision { action: Action::Deny, rule: None });
    }

    #[test]
    fn network_specificity() {
        let mut p = empty(Action::Allow);
        let net = |cidr: &str, ports: Option<&str>, action| NetRule {
            cidr: cidr.parse().unwrap(),
            ports: ports.map(|p| p.parse().unwrap()),
            action,
        };
        p.network = vec![
            net("10.0.0.0/8", None, Action::Deny),
            net("10.0.0.0/8", Some("5432"), Action::Allow),
            net("10.1.0.0/16", Some("80"), Action::Log),
            net("::/0", None, Action::Drop),
        ];
        let at = |ip: &str, port| p.decide_connect(ip.parse().unwrap(), port).rule;
        assert_eq!(at("10.9.9.9", 5432), rule(RuleList::Network, 1), "ports beat no ports");
        assert_eq!(at("10.9.9.9", 5433), rule(RuleList::Network, 0));
        assert_eq!(at("10.1.0.1", 80), rule(RuleList::Network, 2), "longer prefix");
        assert_eq!(at("10.1.0.1", 5432), rule(RuleList::Network, 1), "a longer prefix whose ports miss");
        assert_eq!(at("::1", 1), rule(RuleList::Network, 3));
        assert_eq!(at("::ffff:10.1.0.1", 80), rule(RuleList::Network, 2));
        assert_eq!(at("192.168.0.1", 80), None);
    }

    #[test]
    fn ties_go_to_the_first_rule() {
        let mut p = empty(Action::Allow);
        let pat = |s: &str| PathPattern::new(s).unwrap();
        p.exec = vec![
            ExecRule { path: pat("/usr/bin"), action: Action::Deny },
            ExecRule { path: pat("/usr/bin/"), action: Action::Kill },
        ];
        assert_eq!(p.decide_exec("/usr/bin/x").rule, rule(RuleList::Exec, 0));
    }

    // ---- property tests ----

    /// A path component: short names from a small alphabet, so that siblings sharing a
    /// string prefix (`pg`, `pg2`, `pg.d`) are common.
    fn component() -> impl Strategy<Value = String> {
        "[a-c][a-c2.-]{0,3}"
    }

    fn components(max: usize) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(component(), 1..=max)
    }

    fn action() -> impl Strategy<Value = Action> {
        prop::sample::select(Action::ALL.to_vec())
    }

    /// The reference: does a rule on `rule` (components) match `path` (components)?
    fn naive_under(rule: &[String], path: &[String]) -> bool {
        rule.len() <= path.len() && rule.iter().zip(path).all(|(a, b)| a == b)
    }

    fn join(c: &[String]) -> String {
        format!("/{}", c.join("/"))
    }

    /// The reference: the first `len` bits of two addresses of one family are equal.
    fn naive_in(net: IpAddr, len: u8, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> Vec<bool> {
            let bytes = match a {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            bytes.iter().flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1)).collect()
        };
        net.is_ipv4() == ip.is_ipv4() && bits(net)[..usize::from(len)] == bits(ip)[..usize::from(len)]
    }

    /// An address and a prefix length valid for it; IPv6 addresses are sometimes
    /// IPv4-mapped.
    fn addr_and_len() -> impl Strategy<Value = (IpAddr, u8)> {
        prop_oneof![
            (any::<u32>(), 0..=32u8).prop_map(|(a, l)| (IpAddr::V4(Ipv4Addr::from_bits(a)), l)),
            (any::<u128>(), 0..=128u8).prop_map(|(a, l)| (IpAddr::V6(Ipv6Addr::from_bits(a)), l)),
        ]
    }

    /// An address to test against `net`: random, or `net` with some low bits flipped, so
    /// that both inside and outside near the boundary are common.
    fn probe(net: IpAddr) -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from_bits(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from_bits(a))),
            (0..128u32).prop_map(move |bit| match net {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() ^ (1u32 << (bit % 32)))),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() ^ (1u128 << bit))),
            }),
            Just(net).prop_map(|net| match net {
                IpAddr::V4(a) => IpAddr::V6(a.to_ipv6_mapped()),
                v6 => v6,
            }),
        ]
    }

    proptest! {
        /// A rule matches itself and what is under it, and never a sibling that merely
        /// shares a string prefix (`/a/pg/` vs `/a/pg2`), trailing `/` or not.
        #[test]
        fn paths_match_at_component_boundaries(
            rule in components(4),
            rest in components(3),
            sibling_suffix in "[a-c2.-]{1,3}",
            dir in any::<bool>(),
        ) {
            let text = if dir { format!("{}/", join(&rule)) } else { join(&rule) };
            let pattern = PathPattern::new(&text).unwrap();
            prop_assert!(pattern.matches(Path::new(&join(&rule))));
            let with_slash = format!("{}/", join(&rule));
            prop_assert!(pattern.matches(Path::new(&with_slash)));
            let mut under = rule.clone();
            under.extend(rest.iter().cloned());
            prop_assert!(pattern.matches(Path::new(&join(&under))));
            let sibling = format!("{}{sibling_suffix}", join(&rule));
            prop_assert!(!pattern.matches(Path::new(&sibling)), "{} matched {}", text, sibling);
            let mut sibling_under = vec![format!("{}{sibling_suffix}", rule[rule.len() - 1])];
            sibling_under.extend(rest);
            let parent = &rule[..rule.len() - 1];
            let sibling_path = join(&[parent, &sibling_under].concat());
            prop_assert!(!pattern.matches(Path::new(&sibling_path)), "{} matched {}", text, sibling_path);
        }

        /// Matching agrees with the component-wise reference for random rules and paths.
        #[test]
        fn path_matching_agrees_with_reference(rule in components(3), path in components(4)) {
            let pattern = PathPattern::new(&join(&rule)).unwrap();
            prop_assert_eq!(pattern.matches(Path::new(&join(&path))), naive_under(&rule, &path));
        }

        /// The most specific exec and file rule wins, whatever order the rules are in:
        /// the decision equals the reference (deepest matching rule) for every order.
        #[test]
        fn longest_rule_wins_regardless_of_order(
            rule_paths in prop::collection::btree_set(components(4), 1..8),
            actions in prop::collection::vec(action(), 8),
            accesses in prop::collection::vec(prop::sample::select(vec![Access::Read, Access::Write, Access::Any]), 8),
            target in components(5),
            open in prop::sample::select(vec![Access::Read, Access::Write]),
            seed in any::<u64>(),
        ) {
            let rule_paths: Vec<Vec<String>> = rule_paths.into_iter().collect();
            let mut exec: Vec<ExecRule> = rule_paths
                .iter()
                .zip(&actions)
                .map(|(c, &action)| ExecRule { path: PathPattern::new(&join(c)).unwrap(), action })
                .collect();
            let mut files: Vec<FileRule> = rule_paths
                .iter()
                .zip(actions.iter().zip(&accesses))
                .map(|(c, (&action, &access))| FileRule { path: PathPattern::new(&join(c)).unwrap(), access, action })
                .collect();
            // A deterministic shuffle from the seed.
            let n = exec.len();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let j = usize::try_from(s >> 33).unwrap() % (i + 1);
                exec.swap(i, j);
                files.swap(i, j);
            }
            let mut p = empty(Action::Deny);
            p.exec = exec.clone();
            p.files = files.clone();
            let target_path = join(&target);

            let depth = |r: &PathPattern| r.base().split('/').count();
            let want_exec = exec
                .iter()
                .filter(|r| naive_under(&r.path.base()[1..].split('/').map(str::to_owned).collect::<Vec<_>>(), &target))
                .max_by_key(|r| depth(&r.path))
                .map_or(Action::Deny, |r| r.action);
            prop_assert_eq!(p.decide_exec(&target_path).action, want_exec);

            let want_file = files
                .iter()
                .filter(|r| r.access.covers(open))
                .filter(|r| naive_under(&r.path.base()[1..].split('/').map(str::to_owned).collect::<Vec<_>>(), &target))
                .max_by_key(|r| (depth(&r.path), r.access == open))
                .map_or(Action::Deny, |r| r.action);
            prop_assert_eq!(p.decide_file(&target_path, open).action, want_file);
        }

        /// `Cidr::contains` agrees with a bit-by-bit reference for random IPv4 and IPv6
        /// networks and addresses, including IPv4-mapped ones.
        #[test]
        fn cidr_matching_agrees_with_reference((addr, len) in addr_and_len(), seed in any::<u128>()) {
            let cidr = Cidr::containing(addr, len).unwrap();
            // A mapped IPv6 network with a long prefix is refused by `Cidr::new`; the
            // containing network still exists and must still behave.
            let probes = [addr, cidr.addr(), IpAddr::V4(Ipv4Addr::from_bits(u32::try_from(seed >> 96).unwrap())),
                IpAddr::V6(Ipv6Addr::from_bits(seed))];
            for ip in probes {
                prop_assert_eq!(cidr.contains(ip), naive_in(cidr.addr(), len, ip), "{} in {}", ip, cidr);
            }
            prop_assert!(
                Cidr::new(cidr.addr(), len).is_ok() || matches!(cidr.addr(), IpAddr::V6(a) if a.to_ipv4_mapped().is_some())
            );
        }

        #[test]
        fn cidr_matching_near_the_boundary(((addr, len), ip) in addr_and_len().prop_flat_map(|(a, l)| (Just((a, l)), probe(a)))) {
            let cidr = Cidr::containing(addr, len).unwrap();
            prop_assert_eq!(cidr.contains(ip), naive_in(cidr.addr(), len, ip), "{} in {}", ip, cidr);
        }

        /// Connect decisions equal the reference: longest matching prefix, then a rule
        /// with ports, whatever the rule order.
        #[test]
        fn connect_picks_longest_prefix_then_ports(
            rules in prop::collection::vec((0..=32u8, any::<bool>(), 1..=20u16, action()), 1..10),
            base in any::<u32>(),
            flip in 0..32u32,
            port in 1..=20u16,
        ) {
            let target = IpAddr::V4(Ipv4Addr::from_bits(base ^ (1 << flip)));
            let mut seen = BTreeSet::new();
            let network: Vec<NetRule> = rules
                .into_iter()
                .filter(|&(len, with_ports, _, _)| seen.insert((len, with_ports)))
                .map(|(len, with_ports, p, action)| NetRule {
                    cidr: Cidr::containing(IpAddr::V4(Ipv4Addr::from_bits(base)), len).unwrap(),
                    ports: with_ports.then(|| PortSet::new([p..=p.saturating_add(3)]).unwrap()),
                    action,
                })
                .collect();
            let want = network
                .iter()
                .filter(|r| naive_in(r.cidr.addr(), r.cidr.prefix_len(), target))
                .filter(|r| r.ports.as_ref().is_none_or(|ps| ps.ranges().any(|range| range.contains(&port))))
                .max_by_key(|r| (r.cidr.prefix_len(), r.ports.is_some()))
                .map_or(Action::Allow, |r| r.action);
            for order in [false, true] {
                let mut p = empty(Action::Allow);
                p.network = network.clone();
                if order {
                    p.network.reverse();
                }
                prop_assert_eq!(p.decide_connect(target, port).action, want);
            }
        }

        /// A port set contains exactly the ports of its ranges, however they overlap,
        /// and its text form reads back as the same set.
        #[test]
        fn port_sets_agree_with_reference(
            ranges in prop::collection::vec((1..=65535u16, 0..300u16), 1..6),
            probes in prop::collection::vec(any::<u16>(), 32),
        ) {
            let ranges: Vec<_> = ranges.into_iter().map(|(a, n)| a..=a.saturating_add(n)).collect();
            let set = PortSet::new(ranges.clone()).unwrap();
            for port in probes.into_iter().chain(ranges.iter().flat_map(|r| [*r.start(), *r.end(), r.end().saturating_add(1), r.start() - 1])) {
                prop_assert_eq!(set.contains(port), ranges.iter().any(|r| r.contains(&port)), "port {}", port);
            }
            prop_assert_eq!(set.to_string().parse::<PortSet>().unwrap(), set.clone());
            let merged: Vec<_> = set.ranges().collect();
            prop_assert!(merged.windows(2).all(|w| u32::from(*w[0].end()) + 1 < u32::from(*w[1].start())));
        }

        /// `first_common` finds a shared port exactly when there is one, and the lowest.
        #[test]
        fn port_sets_overlap(a in (1..=200u16, 0..20u16), b in (1..=200u16, 0..20u16), c in (1..=200u16, 0..20u16)) {
            let x = PortSet::new([a.0..=a.0 + a.1, c.0..=c.0 + c.1]).unwrap();
            let y = PortSet::new([b.0..=b.0 + b.1]).unwrap();
            let want = (1..=250u16).find(|&p| x.contains(p) && y.contains(p));
            prop_assert_eq!(x.first_common(&y), want);
            prop_assert_eq!(y.first_common(&x), want);
        }
    }
}
