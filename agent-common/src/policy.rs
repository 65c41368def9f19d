//! Policies as the kernel sees them: actions, and the network rules kept in an
//! LPM trie.
//!
//! ```text
//! POLICIES   array     policy slot -> PolicyState     what to do when no rule matches
//! NET_RULES  lpm trie  (policy slot, address prefix) -> NetVerdict
//!                      key bits: 32 bits of policy slot (always matched in full),
//!                      then an IPv6 address; IPv4 is mapped into ::ffff:0:0/96
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

#[cfg(feature = "user")]
mod pod {
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
    }
}
