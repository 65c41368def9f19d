//! Compiling a policy's network rules into `NET_RULES` entries, and its `unix:`
//! rules and self-protection's socket table into `UNIX_RULES` entries (layouts in
//! `warrant_common::policy`).
//!
//! The kernel does one LPM lookup per connect and takes the longest matching
//! prefix. A rule with ports that does not match the port must then fall back to
//! the next shorter prefix, which a single lookup cannot do. So each prefix's entry
//! carries the port rules of every rule containing it, most specific first, and ends
//! with the first port-less rule among them (or the policy default). The kernel's
//! answer is then exactly [`warrant_policy`]'s answer, which a test checks for
//! random addresses.

use std::net::{IpAddr, Ipv6Addr};

use warrant_common::policy::{
    ACTION_ALLOW, ACTION_DENY, ACTION_DROP, BIND_SLOT_BIT, ACTION_KILL, ACTION_KILL_SESSION, ACTION_LOG, NetKey, NetVerdict,
    PORT_RULES, POLICY_KEY_BITS, PortRule, UNIX_RULE_HARD, UNIX_SELF_SLOT, UnixKey, UnixVerdict, V4_MAPPED_BITS,
};
use warrant_common::event::UNIX_PATH_MAX;
use warrant_policy::{Action, Cidr, NetRule, Policy};

/// A policy too complex for the kernel's fixed-size entries.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: more than {max} port ranges apply to {prefix}; merge some network rules")]
pub struct TooComplex {
    pub policy: String,
    pub prefix: String,
    pub max: usize,
}

/// The kernel's number for an action.
pub fn action_code(a: Action) -> u32 {
    match a {
        Action::Allow => ACTION_ALLOW,
        Action::Log => ACTION_LOG,
        Action::Deny => ACTION_DENY,
        Action::Kill => ACTION_KILL,
        Action::KillSession => ACTION_KILL_SESSION,
        Action::Drop => ACTION_DROP,
    }
}

/// One trie entry: prefix length (bits, policy slot included) and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub prefix_len: u32,
    pub key: NetKey,
    pub verdict: NetVerdict,
}

/// A prefix in the kernel's key space: IPv6 bits, IPv4 mapped under ::ffff:0:0/96.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KPrefix {
    addr: Ipv6Addr,
    len: u32,
}

impl KPrefix {
    fn of(c: &Cidr) -> Self {
        match c.addr() {
            IpAddr::V4(a) => Self { addr: a.to_ipv6_mapped(), len: V4_MAPPED_BITS + u32::from(c.prefix_len()) },
            IpAddr::V6(a) => Self { addr: a, len: u32::from(c.prefix_len()) },
        }
    }

    fn contains(&self, other: &Self) -> bool {
        self.len <= other.len && mask(other.addr, self.len) == self.addr
    }
}

fn mask(a: Ipv6Addr, len: u32) -> Ipv6Addr {
    let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    Ipv6Addr::from_bits(a.to_bits() & m)
}

/// The entries for `policy` under `slot`: its `network` rules (falling back to
/// the policy's `default`), and its `bind` rules under `slot | BIND_SLOT_BIT`
/// (falling back to allow).
pub fn compile(policy: &Policy, slot: u32) -> Result<Vec<Entry>, TooComplex> {
    let mut out = compile_list(&policy.name, &policy.network, action_code(policy.default), slot)?;
    if !policy.bind.is_empty() {
        out.extend(compile_list(&policy.name, &policy.bind, ACTION_ALLOW, slot | BIND_SLOT_BIT)?);
    }
    Ok(out)
}

/// The entries of one rule list under `slot`, `default` where no rule decides.
fn compile_list(name: &str, list: &[NetRule], default: u32, slot: u32) -> Result<Vec<Entry>, TooComplex> {
    let rules: Vec<(KPrefix, usize)> = list.iter().enumerate().map(|(i, r)| (KPrefix::of(&r.cidr), i)).collect();
    let mut prefixes: Vec<KPrefix> = rules.iter().map(|(p, _)| *p).collect();
    // IPv4-mapped addresses are IPv4 to the policy: an IPv6 rule covering
    // ::ffff:0:0/96 (say ::/0) must not reach them, so that subtree gets its own
    // entry that only IPv4 rules feed.
    let mapped_root = KPrefix { addr: std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(), len: V4_MAPPED_BITS };
    if rules.iter().any(|(p, _)| p.len < V4_MAPPED_BITS && p.contains(&mapped_root)) {
        prefixes.push(mapped_root);
    }
    prefixes.sort_by_key(|p| (p.len, p.addr));
    prefixes.dedup();

    let mut out = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        let in_v4 = mapped_root.contains(&p);
        // Rules whose network contains this prefix, most specific first, and for the
        // same prefix a rule with ports before one without.
        let mut applicable: Vec<&(KPrefix, usize)> = rules
            .iter()
            .filter(|(rp, _)| rp.contains(&p))
            .filter(|(rp, _)| !in_v4 || rp.len >= V4_MAPPED_BITS)
            .collect();
        applicable.sort_by_key(|(rp, i)| (std::cmp::Reverse(rp.len), list[*i].ports.is_none(), *i));
        let mut v = NetVerdict { action: default, ..NetVerdict::default() };
        let mut n = 0usize;
        for (_, i) in applicable {
            let rule = &list[*i];
            let idx = (*i + 1) as u16;
            match &rule.ports {
                Some(ports) => {
                    for r in ports.ranges() {
                        if n == PORT_RULES {
                            return Err(TooComplex {
                                policy: name.to_owned(),
                                prefix: format!("{}/{}", p.addr, p.len),
                                max: PORT_RULES,
                            });
                        }
                        v.ports[n] = PortRule { lo: *r.start(), hi: *r.end(), action: action_code(rule.action) as u16, rule: idx };
                        n += 1;
                    }
                }
                None => {
                    v.action = action_code(rule.action);
                    v.rule = u32::from(idx);
                    break; // shorter prefixes are shadowed
                }
            }
        }
        v.n_ports = n as u32;
        out.push(Entry {
            prefix_len: POLICY_KEY_BITS + p.len,
            key: NetKey { policy: slot.to_be_bytes(), addr: p.addr.octets() },
            verdict: v,
        });
    }
    Ok(out)
}

/// One `UNIX_RULES` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixEntry {
    pub prefix_len: u32,
    pub key: UnixKey,
    pub verdict: UnixVerdict,
}

impl UnixEntry {
    fn new(slot: u32, name: &[u8], action: u32, rule: u32, flags: u32) -> Self {
        let mut key = UnixKey { policy: slot.to_be_bytes(), ..UnixKey::default() };
        let n = name.len().min(UNIX_PATH_MAX);
        key.path[..n].copy_from_slice(&name[..n]);
        Self {
            prefix_len: POLICY_KEY_BITS + 8 * n as u32,
            key,
            verdict: UnixVerdict { action, rule, flags, _pad: 0 },
        }
    }
}

/// The `unix:` rules of `policy` under `slot`: one prefix entry per rule (the
/// parser refuses two rules on one name, so the trie's longest match is the
/// policy's own answer).
///
/// A rule on a `/run/…` name also covers `/var/run/…` (and the other way round)
/// unless the policy has a rule of its own there: daemons bind either spelling,
/// and the kernel checks the name a connect's peer is bound to as well.
pub fn compile_unix(policy: &Policy, slot: u32) -> Vec<UnixEntry> {
    let names: Vec<Vec<u8>> = policy.unix.iter().map(|r| r.name.key_bytes()).collect();
    let mut out = Vec::new();
    for (i, r) in policy.unix.iter().enumerate() {
        let (action, rule) = (action_code(r.action), (i + 1) as u32);
        out.push(UnixEntry::new(slot, &names[i], action, rule, 0));
        let twin = if let Some(rest) = names[i].strip_prefix(b"/var/run/") {
            Some([b"/run/".as_slice(), rest].concat())
        } else {
            names[i].strip_prefix(b"/run/").map(|rest| [b"/var/run/".as_slice(), rest].concat())
        };
        if let Some(twin) = twin.filter(|t| t.len() <= UNIX_PATH_MAX && !names.contains(t)) {
            out.push(UnixEntry::new(slot, &twin, action, rule, 0));
        }
    }
    out
}

/// Self-protection's entries: the known process spawners (a policy rule may
/// decide instead) and the agent's own sockets (`own`, hard: refused whatever a
/// policy says). Spawner rule numbers index `protect::unix_spawners()` from 1; the
/// agent's sockets are rule 0.
pub fn unix_self_protection(own: &[Vec<u8>]) -> Vec<UnixEntry> {
    let mut out: Vec<UnixEntry> = warrant_policy::protect::unix_spawners()
        .iter()
        .enumerate()
        .map(|(i, (name, _))| UnixEntry::new(UNIX_SELF_SLOT, name, ACTION_DENY, (i + 1) as u32, 0))
        .collect();
    for name in own {
        out.retain(|e| e.prefix_len != POLICY_KEY_BITS + 8 * name.len().min(UNIX_PATH_MAX) as u32 || !e.key.path.starts_with(name));
        out.push(UnixEntry::new(UNIX_SELF_SLOT, name, ACTION_DENY, 0, UNIX_RULE_HARD));
    }
    out
}

#[cfg(test)]
/// What the kernel would decide, from compiled entries: longest prefix, then the
/// first port rule containing the port, then the entry's fallback. Used by tests
/// to check the compile against the policy's own matcher.
pub fn kernel_decision(entries: &[Entry], slot: u32, ip: IpAddr, port: u16, default: u32) -> (u32, u32) {
    let addr = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let best = entries
        .iter()
        .filter(|e| e.key.policy == slot.to_be_bytes())
        .filter(|e| {
            let len = e.prefix_len - POLICY_KEY_BITS;
            mask(addr, len) == Ipv6Addr::from(e.key.addr)
        })
        .max_by_key(|e| e.prefix_len);
    match best {
        None => (default, 0),
        Some(e) => {
            let v = &e.verdict;
            v.ports[..v.n_ports as usize]
                .iter()
                .find(|p| port >= p.lo && port <= p.hi)
                .map_or((v.action, v.rule), |p| (u32::from(p.action), u32::from(p.rule)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use proptest::prelude::*;

    use super::*;

    fn policy(net: &str) -> Policy {
        let text = format!("name: t\nmax_ttl: 1h\ndefault: allow\nnetwork:\n{net}\n");
        warrant_policy::Policy::from_yaml(&text, "t.yaml").expect("valid test policy")
    }

    #[test]
    fn example_policy_compiles_to_expected_decisions() {
        let p = policy(
            "  - {cidr: 10.0.0.0/8, ports: [5432], action: allow}\n  - {cidr: 0.0.0.0/0, action: drop}\n  - {cidr: 10.1.0.0/16, action: deny}",
        );
        let e = compile(&p, 7).unwrap();
        let d = |ip: &str, port| kernel_decision(&e, 7, IpAddr::from_str(ip).unwrap(), port, ACTION_ALLOW);
        assert_eq!(d("10.2.3.4", 5432), (ACTION_ALLOW, 1));
        assert_eq!(d("10.2.3.4", 22), (ACTION_DROP, 2), "falls back to 0.0.0.0/0");
        assert_eq!(d("10.1.3.4", 5432), (ACTION_DENY, 3), "the /16 beats the /8 even with its port");
        assert_eq!(d("192.168.1.1", 80), (ACTION_DROP, 2));
        assert_eq!(d("2001:db8::1", 80), (ACTION_ALLOW, 0), "no IPv6 rule: the default");
    }

    #[test]
    fn ipv6_catch_all_does_not_cover_ipv4_mapped() {
        let p = policy("  - {cidr: '::/0', action: deny}");
        let e = compile(&p, 1).unwrap();
        assert_eq!(kernel_decision(&e, 1, IpAddr::from_str("::ffff:10.0.0.1").unwrap(), 80, 0), (ACTION_ALLOW, 0));
        assert_eq!(kernel_decision(&e, 1, IpAddr::from_str("2001:db8::1").unwrap(), 80, 0), (ACTION_DENY, 1));
    }

    #[test]
    fn too_many_port_ranges_is_refused() {
        let ports: Vec<String> = (1..=9).map(|p| (p * 10).to_string()).collect();
        let p = policy(&format!("  - {{cidr: 10.0.0.0/8, ports: [{}], action: allow}}", ports.join(", ")));
        assert!(compile(&p, 1).unwrap_err().to_string().contains("more than 8 port ranges"));
    }

    proptest! {
        /// For random rules and destinations, the compiled kernel entries decide
        /// exactly as the policy's own matcher does.
        #[test]
        fn kernel_agrees_with_the_policy(
            rules in proptest::collection::vec((any::<[u8; 4]>(), 0u8..=32, proptest::option::of(1u16..2000), 0usize..6), 0..6),
            probes in proptest::collection::vec((any::<[u8; 4]>(), 1u16..2000), 20),
        ) {
            let actions = ["allow", "log", "deny", "kill", "kill-session", "drop"];
            let mut text = String::new();
            let mut seen = std::collections::HashSet::new();
            for (a, len, port, act) in &rules {
                let c = Cidr::containing(IpAddr::from(*a), *len).unwrap();
                if !seen.insert((c, *port)) { continue; }
                let ports = port.map(|p| format!(", ports: [{p}]")).unwrap_or_default();
                text.push_str(&format!("  - {{cidr: {}/{}{ports}, action: {}}}\n", c.addr(), c.prefix_len(), actions[*act]));
            }
            if text.is_empty() { text.push_str("  []\n"); }
            let Ok(p) = Policy::from_yaml(&format!("name: t\nmax_ttl: 1h\ndefault: deny\nnetwork:\n{text}"), "t.yaml") else {
                return Ok(());
            };
            let e = compile(&p, 3).unwrap();
            for (ip, port) in probes {
                let ip = IpAddr::from(ip);
                let want = p.decide_connect(ip, port);
                let (action, _) = kernel_decision(&e, 3, ip, port, action_code(p.default));
                prop_assert_eq!(action, action_code(want.action), "{} port {}", ip, port);
            }
        }
    }
}
