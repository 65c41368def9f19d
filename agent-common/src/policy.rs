//! Policies as the kernel sees them: actions, and the network rules kept in an
//! LPM trie.
//!
//! ```text
//! POLICIES   array     policy slot -> PolicyState     what to do when no rule matches
//! NET_RULES  lpm trie  (policy slot, address prefix) -> NetVerdict
//!                      key bits: 32 bits of policy slot (always matched in full),
//!                      then an IPv6 address; IPv4 is mapped into ::ffff:0:0/96
//! UNIX_RULES lpm trie  (policy slot, socket name prefix) -> UnixVerdict
//!                      key bits: 32 bits of policy slot, then `sun_path` bytes as
//!                      passed (an abstract name starts with its NUL);
//!                      slot UNIX_SELF_SLOT holds self-protection's entries
//! ```
//!
//! A grant names its policy slot in `GrantState::policy_slot` (0: no policy). A
//! live swap writes the new rules under a fresh slot, then flips that one field: the
//! kernel sees the whole old policy or the whole new one, never half.
//!
//! An LPM lookup returns only the longest matching prefix, so a rule with ports
//! that does not match a port cannot fall back to a shorter prefix in the kernel.
//! User space therefore compiles each prefix's entry with the port rules of every
//! shorter prefix containing it, most specific first, and the fallback action last.

/// Array of [`PolicyState`], indexed by policy slot.
pub const POLICIES: &str = "POLICIES";
/// LPM trie of [`NetKey`] to [`NetVerdict`].
pub const NET_RULES: &str = "NET_RULES";

/// LPM trie of [`UnixKey`] to [`UnixVerdict`].
pub const UNIX_RULES: &str = "UNIX_RULES";
/// Entries of [`UNIX_RULES`] across all policies and self-protection.
pub const UNIX_RULE_ENTRIES: u32 = 4096;
/// The `UNIX_RULES` slot of self-protection's entries, looked up for every session
/// whatever its policy (policy slots are below [`POLICY_SLOTS`]).
pub const UNIX_SELF_SLOT: u32 = u32::MAX;
/// `UnixVerdict::flags`: no policy may allow this name (the agent's own sockets).
/// Without it a self-protection entry is a default a policy's `unix:` rule overrides.
pub const UNIX_RULE_HARD: u32 = 1 << 0;

/// Set in a `NET_RULES` key's policy slot for the policy's `bind` rules, which
/// share the trie (and its compiler) with the `network` rules.
pub const BIND_SLOT_BIT: u32 = 1 << 31;

/// Policy slots; slot 0 means "no policy".
pub const POLICY_SLOTS: u32 = 256;
/// Network rule entries across all policies.
pub const NET_RULE_ENTRIES: u32 = 16_384;
/// Port rules per prefix entry.
pub const PORT_RULES: usize = 8;
/// Bits of the key taken by the policy slot.
pub const POLICY_KEY_BITS: u32 = 32;
/// Prefix of IPv4-mapped IPv6 addresses (`::ffff:0:0/96`).
pub const V4_MAPPED_BITS: u32 = 96;

/// The action of a rule. Numbers are part of the contract.
pub const ACTION_ALLOW: u32 = 0;
/// Allow, and flag the event.
pub const ACTION_LOG: u32 = 1;
/// Refuse the call; its effect never happens.
pub const ACTION_DENY: u32 = 2;
/// Refuse, and kill the process.
pub const ACTION_KILL: u32 = 3;
/// Refuse, and kill the whole session.
pub const ACTION_KILL_SESSION: u32 = 4;
/// Refuse, and destroy the session's open sockets.
pub const ACTION_DROP: u32 = 5;

/// `TaskTag::flags`: the process broke a `kill` rule; its next hook kills it.
pub const TAG_DOOMED: u32 = 1 << 0;

/// `PolicyState::flags`: when the grant expires, keep the processes and cut the
/// network (`on_expiry: drop`) instead of killing the session.
pub const POLICY_ON_EXPIRY_DROP: u32 = 1 << 0;
/// `PolicyState::flags`: the session may make raw and packet sockets
/// (`raw_sockets: allow`); refused otherwise, and always without a policy.
pub const POLICY_RAW_SOCKETS: u32 = 1 << 1;

/// Per-policy settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Action when no network rule matches (the policy's `default`).
    pub net_default: u32,
    /// Nonzero while the slot holds a policy.
    pub in_use: u32,
    /// Which policy this is (a digest prefix), to tell slots apart in events.
    pub policy_id: u64,
    /// `POLICY_*` flags.
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// The data part of a `NET_RULES` key (the trie's `Key` adds the prefix length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetKey {
    /// Policy slot, big-endian so it is the first 32 bits compared.
    pub policy: [u8; 4],
    /// IPv6 address, network order; IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
}

/// One port range and what to do for it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRule {
    /// First port, host order.
    pub lo: u16,
    /// Last port, inclusive.
    pub hi: u16,
    /// An `ACTION_*` value.
    pub action: u16,
    /// 1-based index of the rule in the policy's `network` list.
    pub rule: u16,
}

/// What to do for an address under one prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetVerdict {
    /// Checked in order; the first range containing the port decides.
    pub ports: [PortRule; PORT_RULES],
    /// Entries of `ports` in use.
    pub n_ports: u32,
    /// Action when no port rule matches.
    pub action: u32,
    /// 1-based rule index for `action` (0: the policy default).
    pub rule: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// The data part of a `UNIX_RULES` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixKey {
    /// Policy slot (or [`UNIX_SELF_SLOT`]), big-endian.
    pub policy: [u8; 4],
    /// Socket name bytes; the entry's prefix length says how many count.
    pub path: [u8; crate::event::UNIX_PATH_MAX],
}

impl Default for UnixKey {
    fn default() -> Self {
        Self { policy: [0; 4], path: [0; crate::event::UNIX_PATH_MAX] }
    }
}

/// What to do for a unix socket name under one prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnixVerdict {
    /// An `ACTION_*` value.
    pub action: u32,
    /// 1-based index of the rule in its list.
    pub rule: u32,
    /// `UNIX_RULE_*` flags.
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::UnixKey {}
    unsafe impl aya::Pod for super::UnixVerdict {}
    // SAFETY: repr(C), Copy, explicit padding only.
    unsafe impl aya::Pod for super::PolicyState {}
    unsafe impl aya::Pod for super::NetKey {}
    unsafe impl aya::Pod for super::NetVerdict {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<PolicyState>(), 24);
        assert_eq!(core::mem::offset_of!(PolicyState, flags), 16);
        assert_eq!(size_of::<NetKey>(), 20);
        assert_eq!(size_of::<PortRule>(), 8);
        assert_eq!(size_of::<NetVerdict>(), 8 * PORT_RULES + 16);
        assert_eq!(size_of::<UnixKey>(), 112);
        assert_eq!(size_of::<UnixVerdict>(), 16);
    }
}
