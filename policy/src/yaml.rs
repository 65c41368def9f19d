//! YAML text to a small tree of nodes that remember their line.
//!
//! Policy errors must name the line of the offending *value* (a bad CIDR, an unknown
//! access), which serde-based YAML crates cannot give for semantic errors found after
//! deserialising. So this module reads saphyr-parser's event stream (YAML 1.2, with a
//! span on every event) into [`Node`]s, and `parse` walks them.
//!
//! Scalars are kept as text: the policy schema, not YAML's type guessing, decides what
//! `5432` or `no` means. Duplicate keys are kept too, so the parser can report them with
//! the field's name. What a policy never needs is refused here, with its line: anchors
//! and aliases (no `*x` indirection in a security policy, and no alias bombs), tags, more
//! than one document, and nesting deeper than [`MAX_DEPTH`].

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// The deepest nesting accepted. A policy needs 4 (`network[0].ports[0]`); the limit
/// keeps a hostile file from building a tree deep enough to overflow the stack when it
/// is dropped or walked.
pub const MAX_DEPTH: usize = 32;

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The 1-based line where the node starts.
    pub line: usize,
    /// The 1-based column where the node starts.
    pub column: usize,
    /// What the node holds.
    pub value: Value,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar, as text.
    Scalar(Scalar),
    /// A sequence, in order.
    Seq(Vec<Node>),
    /// A mapping, entries in document order, duplicates kept.
    Map(Vec<Entry>),
}

/// A scalar's text and whether it was written plain (unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The scalar's value after YAML unescaping and folding.
    pub text: String,
    /// Unquoted: only a plain scalar can be YAML's null (`~`, `null`, or nothing).
    pub plain: bool,
}

impl Scalar {
    /// Whether this is YAML 1.2's null: nothing, `~` or `null` written plain.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// The 1-based line of the key.
    pub key_line: usize,
    /// The value.
    pub value: Node,
}

/// Why the text is not a YAML document this crate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// The 1-based line.
    pub line: usize,
    /// The 1-based column.
    pub column: usize,
    /// What is wrong, lowercase, e.g. "mapping values are not allowed in this context".
    pub message: String,
}

/// A collection being built.
enum Frame {
    /// A sequence and its items so far.
    Seq {
        /// Where it starts (line, column).
        at: (usize, usize),
        /// Its items so far.
        items: Vec<Node>,
    },
    /// A mapping, its entries so far, and a key waiting for its value.
    Map {
        /// Where it starts (line, column).
        at: (usize, usize),
        /// Its entries so far.
        entries: Vec<Entry>,
        /// The key just read, with its line, waiting for its value.
        key: Option<(String, usize)>,
    },
}

/// Reads `text` as one YAML document; `Ok(None)` when it holds no document at all
/// (empty, or only comments).
pub fn load(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_owned(),
        })?;
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(error(span, "a policy file holds one YAML document (found a second)"));
                }
                continue;
            }
            Event::Alias(_) => return Err(error(span, "aliases (*name) are not supported in a policy")),
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor_and_tag(span, anchor, tag.is_some())?;
                Node {
                    line,
                    column,
                    value: Value::Scalar(Scalar { text: text.into_owned(), plain: style == ScalarStyle::Plain }),
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_anchor_and_tag(span, anchor, tag.is_some())?;
                if stack.len() >= MAX_DEPTH {
                    return Err(error(span, &format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq { at: (line, column), items: Vec::new() }
                } else {
                    Frame::Map { at: (line, column), entries: Vec::new(), key: None }
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { at: (line, column), items }) => Node { line, column, value: Value::Seq(items) },
                Some(Frame::Map { at: (line, column), entries, .. }) => {
                    Node { line, column, value: Value::Map(entries) }
                }
                None => continue,
            },
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((key, key_line)) => entries.push(Entry { key, key_line, value: node }),
                None => match node.value {
                    Value::Scalar(s) => *key = Some((s.text, node.line)),
                    _ => {
                        let message = "mapping keys must be plain strings".to_owned();
                        return Err(SyntaxError { line: node.line, column: node.column, message });
                    }
                },
            },
        }
    }
    Ok(root)
}

fn refuse_anchor_and_tag(span: Span, anchor: usize, tagged: bool) -> Result<(), SyntaxError> {
    if anchor != 0 {
        return Err(error(span, "anchors (&name) are not supported in a policy"));
    }
    if tagged {
        return Err(error(span, "tags (!tag) are not supported in a policy"));
    }
    Ok(())
}

fn error(span: Span, message: &str) -> SyntaxError {
    SyntaxError { line: span.start.line(), column: span.start.col() + 1, message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(line: usize, column: usize, text: &str) -> Node {
        Node { line, column, value: Value::Scalar(Scalar { text: text.into(), plain: true }) }
    }

    #[test]
    fn nodes_carry_lines() {
        let root = load("a: 1\nb:\n  - x\n  - {c: \"d\"}\n").unwrap().unwrap();
        let Value::Map(entries) = root.value else { panic!("{root:?}") };
        assert_eq!((entries[0].key.as_str(), entries[0].key_line), ("a", 1));
        assert_eq!(entries[0].value, scalar(1, 4, "1"));
        let Value::Seq(items) = &entries[1].value.value else { panic!() };
        assert_eq!(items[0], scalar(3, 5, "x"));
        assert_eq!(items[1].line, 4);
        let Value::Map(inner) = &items[1].value else { panic!() };
        assert_eq!(inner[0].value.value, Value::Scalar(Scalar { text: "d".into(), plain: false }));
    }

    #[test]
    fn nulls_and_empty() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# only a comment\n").unwrap(), None);
        let root = load("a:\nb: ~\nc: ''\n").unwrap().unwrap();
        let Value::Map(e) = root.value else { panic!() };
        let null = |i: usize| matches!(&e[i].value.value, Value::Scalar(s) if s.is_null());
        assert!(null(0) && null(1) && !null(2));
    }

    #[test]
    fn duplicates_are_kept_for_the_parser() {
        let Value::Map(e) = load("a: 1\na: 2\n").unwrap().unwrap().value else { panic!() };
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn refusals_name_the_line() {
        let err = |t: &str| {
            let e = load(t).unwrap_err();
            format!("{}:{}: {}", e.line, e.column, e.message)
        };
        assert_eq!(err("a: &x 1\nb: *x\n"), "1:4: anchors (&name) are not supported in a policy");
        assert_eq!(err("a: !!str 1\n"), "1:4: tags (!tag) are not supported in a policy");
        assert_eq!(err("a: 1\n---\nb: 2\n"), "2:1: a policy file holds one YAML document (found a second)");
        assert_eq!(err("? [a]\n: 1\n"), "1:3: mapping keys must be plain strings");
        assert!(err("a: [1, 2\n").starts_with("2:1: "), "{}", err("a: [1, 2\n"));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(err(&deep), format!("1:{}: nesting deeper than 32 levels", MAX_DEPTH + 1));
    }
}
