//! The one table of event kinds: each kind's JSON name and the filter shorthand
//! (`process`, `file`, `net`) it belongs to, if any.
//!
//! Everything that names kinds derives from the table below (`kinds!`): the JSON
//! form's `kind` field ([`EventKind::of`]), the decoder, which matches on
//! [`EventKind`] (so a kind added here without a decoder case does not compile),
//! [`KIND_NAMES`], the shorthands' members ([`Shorthand::kinds`]), and what
//! `--kind`, the collector's and the agent's watch filters accept and list
//! ([`kinds_help`]). A new kind in `events.proto` is a compile error in
//! [`EventKind::of`] until it has a row here.

use warrant_proto::event::Event as Kind;

macro_rules! shorthands {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A filter shorthand: a name that stands for several kinds at once.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Shorthand { $(#[doc = concat!("`", $name, "`")] $variant),* }

        impl Shorthand {
            /// Every shorthand, in the order help texts list them.
            pub const ALL: &'static [Shorthand] = &[$(Shorthand::$variant),*];

            /// The shorthand's name, as `--kind` takes it.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Shorthand::$variant => $name),* }
            }

            /// The kinds this shorthand stands for, in the table's order.
            #[must_use]
            pub const fn kinds(self) -> &'static [&'static str] {
                match self { $(Shorthand::$variant => {
                    const N: usize = members_count(Shorthand::$variant);
                    const KINDS: [&str; N] = members::<N>(Shorthand::$variant);
                    &KINDS
                }),* }
            }
        }
    };
}

shorthands! {
    Process => "process",
    File => "file",
    Net => "net",
}

macro_rules! kinds {
    ($($variant:ident => $name:literal $(in $group:ident)?),* $(,)?) => {
        /// What an event is: one variant per `oneof` case of `Event` in
        /// `events.proto`, the same identifiers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum EventKind { $(#[doc = concat!("`", $name, "`")] $variant),* }

        impl EventKind {
            /// Every kind, in the table's order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The kind's JSON name (`"exec"`, `"file_open"`, …).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(EventKind::$variant => $name),* }
            }

            /// The shorthand this kind belongs to, if any.
            #[must_use]
            pub const fn shorthand(self) -> Option<Shorthand> {
                match self { $(EventKind::$variant => kinds!(@group $($group)?)),* }
            }

            /// The kind of a decoded event.
            #[must_use]
            pub const fn of(kind: &Kind) -> EventKind {
                match kind { $(Kind::$variant(_) => EventKind::$variant),* }
            }
        }

        /// Every kind's JSON name, in the table's order (what `--kind` validates
        /// against).
        pub const KIND_NAMES: &[&str] = &[$($name),*];
    };
    (@group) => { None };
    (@group $group:ident) => { Some(Shorthand::$group) };
}

kinds! {
    Exec => "exec" in Process,
    ExecFailed => "exec_failed" in Process,
    Exit => "exit" in Process,
    FileOpen => "file_open" in File,
    FileChange => "file_change" in File,
    Connect => "connect" in Net,
    Bind => "bind" in Net,
    Listen => "listen" in Net,
    Accept => "accept" in Net,
    Datagram => "datagram" in Net,
    SocketClose => "socket_close" in Net,
    IoUring => "io_uring",
    Violation => "violation",
    Kill => "kill",
    EventsLost => "events_lost",
    SessionStart => "session_start",
    SessionEnd => "session_end",
    GrantChange => "grant_change",
    WatchMissed => "watch_missed",
    SocketsDropped => "sockets_dropped",
    SessionReport => "session_report",
    ControlAction => "control_action",
    TokenRefused => "token_refused",
}

impl EventKind {
    /// The kind whose JSON name is `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl Shorthand {
    /// The shorthand named `name`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Shorthand> {
        Shorthand::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// How many kinds belong to `s` (a `const fn`, so [`Shorthand::kinds`] can be a
/// `&'static` slice made from the table at compile time).
const fn members_count(s: Shorthand) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < EventKind::ALL.len() {
        if belongs(EventKind::ALL[i], s) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of the kinds that belong to `s`, in the table's order.
const fn members<const N: usize>(s: Shorthand) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < EventKind::ALL.len() {
        if belongs(EventKind::ALL[i], s) {
            out[n] = EventKind::ALL[i].name();
            n += 1;
        }
        i += 1;
    }
    out
}

const fn belongs(k: EventKind, s: Shorthand) -> bool {
    match k.shorthand() {
        Some(g) => g as u8 == s as u8,
        None => false,
    }
}

/// The JSON name of an event's kind; `"unknown"` for a kind this build does not
/// know (kept verbatim, see `UnknownKind`) or none.
#[must_use]
pub fn kind_name(event: &warrant_proto::Event) -> &'static str {
    event.event.as_ref().map_or("unknown", kind_name_of)
}

/// The JSON name of a kind.
#[must_use]
pub fn kind_name_of(kind: &Kind) -> &'static str {
    EventKind::of(kind).name()
}

/// Expands a filter shorthand (`file`, `net`, `process`); other names give none.
#[must_use]
pub fn expand_kind(name: &str) -> &'static [&'static str] {
    Shorthand::from_name(name).map_or(&[], Shorthand::kinds)
}

/// The kinds and shorthands, as `--kind`'s help and its error message list them.
#[must_use]
pub fn kinds_help() -> String {
    let shorthands: Vec<String> =
        Shorthand::ALL.iter().map(|s| format!("{} ({})", s.name(), s.kinds().join(", "))).collect();
    format!("{}; or the shorthands {}", KIND_NAMES.join(", "), shorthands.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's `--kind` line lists the same shorthands as the code, each with the
    /// kinds it stands for, and its schema has a row for every kind.
    #[test]
    fn readme_lists_the_shorthands_the_code_expands() {
        let readme = include_str!("../../README.md");
        for s in Shorthand::ALL {
            let want = format!("`{}` ({})", s.name(), s.kinds().join(", "));
            assert!(readme.replace("\n  ", " ").contains(&want), "README.md must say {want}");
        }
        for k in KIND_NAMES {
            assert!(readme.contains(&format!("`{k}`")), "README's schema must have a row for {k}");
        }
    }

    #[test]
    fn shorthands_are_made_from_the_table() {
        assert_eq!(Shorthand::Process.kinds(), ["exec", "exec_failed", "exit"]);
        assert_eq!(Shorthand::File.kinds(), ["file_open", "file_change"]);
        assert_eq!(Shorthand::Net.kinds(), ["connect", "bind", "listen", "accept", "datagram", "socket_close"]);
        assert_eq!(expand_kind("net"), Shorthand::Net.kinds());
        assert!(expand_kind("exec").is_empty());
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(*k));
            if let Some(s) = k.shorthand() {
                assert!(s.kinds().contains(&k.name()));
            }
        }
        assert_eq!(KIND_NAMES.len(), EventKind::ALL.len());
        assert!(EventKind::from_name("unknown").is_none(), "\"unknown\" is no kind of the table");
    }
}
