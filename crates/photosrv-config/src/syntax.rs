//! Config text -> syntax tree, every node with its position.
//!
//! The syntax is go-simpleconf's, as the Go photosrv reads it: `<name>` ... `</name>` blocks,
//! `key value` lines (keys lowercased), `#` comments, `\` line continuation, `<<EOT`
//! heredocs, `include FILE` and quoted values. Its quirks are not copied: the character
//! before `#` is kept, a lone `<` is an error rather than a crash, and long lines are read
//! whole. A `#` starts a comment at the start of a line or after white space, so a `#`
//! inside a URL or a word is kept.

use crate::diagnostic::{ConfigError, Diagnostic};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::character::complete::{char, none_of, space0};
use nom::combinator::{map, value};
use nom::multi::fold_many0;
use nom::sequence::{delimited, preceded};
use nom::IResult;
use std::path::{Path, PathBuf};

/// How deep `include` may nest: deeper is a loop or a mistake.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A place in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Index into [`Sources`].
    pub file: usize,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

/// The files a document was read from, kept for error messages and for reload watching.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<(PathBuf, String)>,
}

impl Sources {
    /// Every file read, the main one first.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(path, _)| path.as_path())
    }

    /// The text read from every file, in order: what a reload compares.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(_, text)| text.as_str())
    }

    /// A diagnostic at `pos`, with its source line attached.
    pub fn diagnostic(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        let Some((path, text)) = self.files.get(pos.file) else {
            return Diagnostic::new(Path::new("<config>"), pos.line, pos.col, message);
        };
        let diagnostic = Diagnostic::new(path, pos.line, pos.col, message);
        match text.split('\n').nth(pos.line.saturating_sub(1) as usize) {
            Some(line) => diagnostic.with_source_line(line),
            None => diagnostic,
        }
    }

    /// The path of file `index`.
    pub fn path(&self, index: usize) -> &Path {
        &self.files[index].0
    }
}

/// A `<name>` ... `</name>` block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The name, lowercased.
    pub name: String,
    /// Where `<name>` stands.
    pub pos: Pos,
    /// What it holds, in order.
    pub items: Vec<Item>,
}

/// A `key value` line.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key, lowercased (as go-simpleconf does).
    pub key: String,
    /// The key as written: prefix rewrite rules keep their case.
    pub raw_key: String,
    /// Where the key stands.
    pub pos: Pos,
    /// The value; empty when the line has a key only.
    pub value: Value,
}

/// A value with the position of each of its characters' runs, so that a word inside it
/// can be pointed at even across continuation lines.
#[derive(Debug, Clone, Default)]
pub struct Value {
    /// The text: unquoted, continuations joined, heredoc lines joined with `\n`.
    pub text: String,
    /// (byte offset in `text`, position of that byte), ascending.
    runs: Vec<(usize, Pos)>,
}

impl Value {
    /// The position of the byte at `offset` in [`Value::text`].
    pub fn pos_at(&self, offset: usize) -> Pos {
        let Some(&(start, pos)) = self.runs.iter().rev().find(|(start, _)| *start <= offset) else {
            return Pos::default();
        };
        let chars = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        Pos {
            col: pos.col + chars as u32,
            ..pos
        }
    }

    /// The position where the value starts.
    pub fn pos(&self) -> Pos {
        self.pos_at(0)
    }

    /// The white-space separated words of the value, each with its position.
    pub fn words(&self) -> Vec<(&str, Pos)> {
        let base = self.text.as_ptr() as usize;
        self.text
            .split_whitespace()
            .map(|word| (word, self.pos_at(word.as_ptr() as usize - base)))
            .collect()
    }
}

/// One item of a block.
#[derive(Debug, Clone)]
pub enum Item {
    /// A nested block.
    Block(Block),
    /// A `key value` line.
    Entry(Entry),
}

/// A parsed file, with its includes spliced in.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The top-level items.
    pub items: Vec<Item>,
    /// The files read.
    pub sources: Sources,
}

/// Reads and parses `path` and every file it includes. Every syntax error is reported,
/// not just the first.
pub fn parse_file(path: &Path) -> Result<Document, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(path, &bytes)
}

/// Parses `bytes` as the content of `path` (includes are read relative to its directory).
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Document, ConfigError> {
    let mut parser = Parser::default();
    let items = parser.parse_source(path, bytes, 0);
    if parser.errors.is_empty() {
        Ok(Document {
            items,
            sources: parser.sources,
        })
    } else {
        Err(ConfigError::Invalid(parser.errors))
    }
}

/// What one logical line is.
#[derive(Debug, Clone, PartialEq)]
enum Line<'a> {
    Open(&'a str),
    Close(&'a str),
    Entry { key: &'a str, value: RawValue<'a> },
}

#[derive(Debug, Clone, PartialEq)]
enum RawValue<'a> {
    /// Unquoted text; the offset into the line where it starts.
    Plain(&'a str),
    Quoted(String),
    Heredoc(&'a str),
}

fn block_name(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_alphanumeric() || c == '_')(input)
}

fn close_tag(input: &str) -> IResult<&str, Line<'_>> {
    map(delimited(tag("</"), block_name, char('>')), Line::Close)(input)
}

fn open_tag(input: &str) -> IResult<&str, Line<'_>> {
    map(delimited(char('<'), block_name, char('>')), Line::Open)(input)
}

fn quoted(input: &str) -> IResult<&str, String> {
    let escape = preceded(
        char('\\'),
        alt((
            value('\\', char('\\')),
            value('"', char('"')),
            value('\n', char('n')),
            value('\t', char('t')),
        )),
    );
    delimited(
        char('"'),
        fold_many0(alt((escape, none_of("\\\""))), String::new, |mut s, c| {
            s.push(c);
            s
        }),
        char('"'),
    )(input)
}

fn entry(input: &str) -> IResult<&str, Line<'_>> {
    let (rest, key) = take_till1(|c: char| c.is_whitespace())(input)?;
    let (rest, _) = space0(rest)?;
    if rest.starts_with('"') {
        let (rest, text) = quoted(rest)?;
        return Ok((
            rest,
            Line::Entry {
                key,
                value: RawValue::Quoted(text),
            },
        ));
    }
    if let Some(after) = rest.strip_prefix("<<") {
        let (after, tag_name) = block_name(after)?;
        return Ok((
            after,
            Line::Entry {
                key,
                value: RawValue::Heredoc(tag_name),
            },
        ));
    }
    let text = rest.trim_end();
    Ok((
        &rest[text.len()..],
        Line::Entry {
            key,
            value: RawValue::Plain(text),
        },
    ))
}

fn line(input: &str) -> IResult<&str, Line<'_>> {
    if input.starts_with('<') {
        alt((close_tag, open_tag))(input)
    } else {
        entry(input)
    }
}

/// The part of a physical line before its comment. Quotes protect `#`.
fn strip_comment(line: &str) -> &str {
    let mut in_quote = false;
    let mut escaped = false;
    let mut previous_is_space = true;
    for (at, c) in line.char_indices() {
        if in_quote {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quote = false,
                _ => {}
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '#' && previous_is_space {
            return &line[..at];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

#[derive(Default)]
struct Parser {
    sources: Sources,
    errors: Vec<Diagnostic>,
    /// Canonical paths of the files being read, to refuse include loops.
    including: Vec<PathBuf>,
}

/// A logical line being put together from continued physical lines.
#[derive(Default)]
struct Logical {
    text: String,
    runs: Vec<(usize, Pos)>,
}

impl Logical {
    fn push(&mut self, pos: Pos, text: &str) {
        self.runs.push((self.text.len(), pos));
        self.text.push_str(text);
    }

    fn value_from(&self, offset: usize, text: String) -> Value {
        let mut probe = Value {
            text: self.text.clone(),
            runs: self.runs.clone(),
        };
        let start = probe.pos_at(offset);
        probe.text = text;
        probe.runs = vec![(0, start)];
        probe
    }

    /// The value `text[offset..offset + len]`, keeping the positions of each run.
    fn slice(&self, offset: usize, len: usize) -> Value {
        let end = offset + len;
        let whole = Value {
            text: self.text.clone(),
            runs: self.runs.clone(),
        };
        let mut runs = vec![(0, whole.pos_at(offset))];
        for &(start, pos) in &self.runs {
            if start > offset && start < end {
                runs.push((start - offset, pos));
            }
        }
        Value {
            text: self.text[offset..end].to_owned(),
            runs,
        }
    }
}

impl Parser {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        let diagnostic = self.sources.diagnostic(pos, message);
        self.errors.push(diagnostic);
    }

    fn parse_source(&mut self, path: &Path, bytes: &[u8], depth: usize) -> Vec<Item> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                let col = good.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
                self.errors
                    .push(Diagnostic::new(path, line, col, "file is not valid UTF-8"));
                return Vec::new();
            }
        };
        let file = self.sources.files.len();
        self.sources.files.push((path.to_path_buf(), text.clone()));
        self.including
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        let items = self.parse_lines(file, path, &text, depth);
        self.including.pop();
        items
    }

    fn parse_lines(&mut self, file: usize, path: &Path, text: &str, depth: usize) -> Vec<Item> {
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let mut root: Vec<Item> = Vec::new();
        let mut stack: Vec<Block> = Vec::new();
        let mut next = 0;
        while next < lines.len() {
            let mut logical = Logical::default();
            loop {
                let number = next as u32 + 1;
                let content = strip_comment(lines[next]);
                next += 1;
                let pos = Pos {
                    file,
                    line: number,
                    col: 1,
                };
                match content.trim_end().strip_suffix('\\') {
                    Some(head) if next < lines.len() => logical.push(pos, head),
                    _ => {
                        logical.push(pos, content);
                        break;
                    }
                }
            }
            let trimmed = logical.text.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            let start = logical.text.len() - trimmed.len();
            let pos_of = |offset: usize| logical.value_from(offset, String::new()).pos();
            let parsed = line(trimmed);
            let (rest, parsed) = match parsed {
                Ok(ok) => ok,
                Err(_) => {
                    let message = if trimmed.starts_with("</") {
                        "expected </name> to close a block (names are letters, digits and _)"
                    } else if trimmed.starts_with('<') {
                        "expected <name> to open a block (names are letters, digits and _)"
                    } else if trimmed.contains('"') {
                        "unterminated quoted value: expected a closing \""
                    } else {
                        "expected a heredoc tag after << (letters, digits and _)"
                    };
                    self.error(pos_of(start), message);
                    continue;
                }
            };
            if !rest.trim().is_empty() {
                let at = logical.text.len() - rest.len() + (rest.len() - rest.trim_start().len());
                self.error(pos_of(at), format!("unexpected text {:?}", rest.trim()));
                continue;
            }
            let here = pos_of(start);
            match parsed {
                Line::Open(name) => stack.push(Block {
                    name: name.to_lowercase(),
                    pos: here,
                    items: Vec::new(),
                }),
                Line::Close(name) => {
                    let name = name.to_lowercase();
                    match stack.pop() {
                        Some(block) if block.name == name => {
                            let parent = stack.last_mut().map_or(&mut root, |b| &mut b.items);
                            parent.push(Item::Block(block));
                        }
                        Some(block) => {
                            let opened = block.pos;
                            self.error(
                                here,
                                format!(
                                    "</{name}> does not match <{}> opened at line {}: expected </{}>",
                                    block.name, opened.line, block.name
                                ),
                            );
                            stack.push(block);
                        }
                        None => self.error(here, format!("</{name}> closes no open block")),
                    }
                }
                Line::Entry { key, value: raw } => {
                    let value_offset = start + key.len();
                    let value = match raw {
                        RawValue::Plain(text) => {
                            let offset = logical.text.len() - trimmed.len()
                                + (text.as_ptr() as usize - trimmed.as_ptr() as usize);
                            logical.slice(offset, text.len())
                        }
                        RawValue::Quoted(text) => {
                            let quote = trimmed[key.len()..]
                                .find('"')
                                .map_or(value_offset, |q| value_offset + q + 1);
                            logical.value_from(quote, text)
                        }
                        RawValue::Heredoc(tag_name) => {
                            match self.heredoc(file, &lines, &mut next, tag_name) {
                                Some(value) => value,
                                None => {
                                    self.error(
                                        here,
                                        format!("heredoc <<{tag_name} is never closed: expected a line {tag_name}"),
                                    );
                                    continue;
                                }
                            }
                        }
                    };
                    let entry = Entry {
                        key: key.to_lowercase(),
                        raw_key: key.to_owned(),
                        pos: here,
                        value,
                    };
                    let items = if entry.key == "include" {
                        self.include(path, &entry, depth)
                    } else {
                        vec![Item::Entry(entry)]
                    };
                    let parent = stack.last_mut().map_or(&mut root, |b| &mut b.items);
                    parent.extend(items);
                }
            }
        }
        for block in stack.into_iter().rev() {
            self.error(
                block.pos,
                format!(
                    "<{}> is never closed: expected </{}>",
                    block.name, block.name
                ),
            );
        }
        root
    }

    fn heredoc(
        &mut self,
        file: usize,
        lines: &[&str],
        next: &mut usize,
        tag_name: &str,
    ) -> Option<Value> {
        let mut value = Value::default();
        let mut at = *next;
        while at < lines.len() {
            if lines[at].trim() == tag_name {
                *next = at + 1;
                return Some(value);
            }
            if !value.text.is_empty() || !value.runs.is_empty() {
                value.text.push('\n');
            }
            value.runs.push((
                value.text.len(),
                Pos {
                    file,
                    line: at as u32 + 1,
                    col: 1,
                },
            ));
            value.text.push_str(lines[at]);
            at += 1;
        }
        None
    }

    fn include(&mut self, from: &Path, entry: &Entry, depth: usize) -> Vec<Item> {
        let name = entry.value.text.trim();
        if name.is_empty() {
            self.error(entry.pos, "include needs a file name");
            return Vec::new();
        }
        if depth >= MAX_INCLUDE_DEPTH {
            self.error(
                entry.pos,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
            );
            return Vec::new();
        }
        let target = from.parent().unwrap_or_else(|| Path::new(".")).join(name);
        let canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
        if self.including.contains(&canonical) {
            self.error(entry.value.pos(), format!("{name} includes itself"));
            return Vec::new();
        }
        match std::fs::read(&target) {
            Ok(bytes) => self.parse_source(&target, &bytes, depth + 1),
            Err(e) => {
                self.error(
                    entry.value.pos(),
                    format!("cannot include {}: {e}", target.display()),
                );
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document, ConfigError> {
        parse_bytes(Path::new("t.cfg"), text.as_bytes())
    }

    fn first_error(text: &str) -> String {
        parse(text).unwrap_err().diagnostics()[0].to_string()
    }

    #[test]
    fn reads_blocks_entries_and_positions() {
        let doc =
            parse("<photosrv>\n  chooser   jump # the fast one\n  <DC1>\n  </dc1>\n</photosrv>\n")
                .unwrap();
        let Item::Block(root) = &doc.items[0] else {
            panic!()
        };
        assert_eq!(root.name, "photosrv");
        let Item::Entry(chooser) = &root.items[0] else {
            panic!()
        };
        assert_eq!(
            (chooser.key.as_str(), chooser.value.text.as_str()),
            ("chooser", "jump")
        );
        assert_eq!((chooser.pos.line, chooser.pos.col), (2, 3));
        assert_eq!(chooser.value.pos().col, 13);
        let Item::Block(dc) = &root.items[1] else {
            panic!()
        };
        assert_eq!(dc.name, "dc1");
    }

    #[test]
    fn continuation_keeps_word_positions() {
        let doc = parse("shard1 http://a:1 \\\n       http://b:2\n").unwrap();
        let Item::Entry(e) = &doc.items[0] else {
            panic!()
        };
        let words = e.value.words();
        assert_eq!(words[0].0, "http://a:1");
        assert_eq!((words[0].1.line, words[0].1.col), (1, 8));
        assert_eq!(words[1].0, "http://b:2");
        assert_eq!((words[1].1.line, words[1].1.col), (2, 8));
    }

    #[test]
    fn heredoc_quotes_and_hash_inside_words() {
        let doc =
            parse("a <<EOT\nline one\n# not a comment\nEOT\nb \"x # y\\\"z\"\nc http://h/#frag\n")
                .unwrap();
        let texts: Vec<_> = doc
            .items
            .iter()
            .map(|i| match i {
                Item::Entry(e) => e.value.text.clone(),
                Item::Block(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            texts,
            ["line one\n# not a comment", "x # y\"z", "http://h/#frag"]
        );
    }

    #[test]
    fn quotes_escapes_and_heredocs_keep_their_text_and_places() {
        let doc = parse("q \"p \\\" # r\" # note\nh <<EOT\n\nsecond\nEOT\n").unwrap();
        let values: Vec<&Value> = doc
            .items
            .iter()
            .map(|i| match i {
                Item::Entry(e) => &e.value,
                Item::Block(_) => unreachable!(),
            })
            .collect();
        // An escaped quote does not end the value, and a comment may follow it.
        assert_eq!(values[0].text, "p \" # r");
        assert_eq!((values[0].pos().line, values[0].pos().col), (1, 4));
        // A heredoc may start with an empty line; its lines keep their own numbers.
        assert_eq!(values[1].text, "\nsecond");
        assert_eq!((values[1].pos().line, values[1].pos().col), (3, 1));
        let words = values[1].words();
        assert_eq!(
            (words[0].0, words[0].1.line, words[0].1.col),
            ("second", 4, 1)
        );
    }

    #[test]
    fn errors_point_at_the_place() {
        assert_eq!(
            first_error("<a>\n</b>\n"),
            "t.cfg:2:1: </b> does not match <a> opened at line 1: expected </a>"
        );
        assert_eq!(
            first_error("<a>\n"),
            "t.cfg:1:1: <a> is never closed: expected </a>"
        );
        assert_eq!(
            first_error("  <\n"),
            "t.cfg:1:3: expected <name> to open a block (names are letters, digits and _)"
        );
        assert_eq!(
            first_error("<a> x\n</a>"),
            "t.cfg:1:5: unexpected text \"x\""
        );
        assert_eq!(
            first_error("k <<EOT\nx\n"),
            "t.cfg:1:1: heredoc <<EOT is never closed: expected a line EOT"
        );
        assert_eq!(
            first_error("k \"open\n"),
            "t.cfg:1:1: unterminated quoted value: expected a closing \""
        );
        assert_eq!(
            first_error("k <<\n"),
            "t.cfg:1:1: expected a heredoc tag after << (letters, digits and _)"
        );
    }

    #[test]
    fn includes_are_spliced_and_loops_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inner.cfg"), "x 1\n").unwrap();
        std::fs::write(
            dir.path().join("main.cfg"),
            "<a>\ninclude inner.cfg\n</a>\n",
        )
        .unwrap();
        let doc = parse_file(&dir.path().join("main.cfg")).unwrap();
        let Item::Block(a) = &doc.items[0] else {
            panic!()
        };
        let Item::Entry(x) = &a.items[0] else {
            panic!()
        };
        assert_eq!((x.key.as_str(), x.pos.file), ("x", 1));
        let paths: Vec<&Path> = doc.sources.paths().collect();
        assert_eq!(
            paths,
            [dir.path().join("main.cfg"), dir.path().join("inner.cfg")]
        );
        let texts: Vec<&str> = doc.sources.texts().collect();
        assert_eq!(texts, ["<a>\ninclude inner.cfg\n</a>\n", "x 1\n"]);
        std::fs::write(dir.path().join("loop.cfg"), "include loop.cfg\n").unwrap();
        let err = parse_file(&dir.path().join("loop.cfg")).unwrap_err();
        assert!(err.to_string().contains("includes itself"), "{err}");
        // A chain of distinct files deeper than the limit.
        for depth in 0..=MAX_INCLUDE_DEPTH {
            let next = format!("include deep{}.cfg\n", depth + 1);
            std::fs::write(dir.path().join(format!("deep{depth}.cfg")), next).unwrap();
        }
        let err = parse_file(&dir.path().join("deep0.cfg")).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("includes nest deeper than {MAX_INCLUDE_DEPTH}")),
            "{err}"
        );
    }

    #[test]
    fn not_utf8_is_an_error_with_a_position() {
        let err = parse_bytes(Path::new("t.cfg"), b"ok\nab\xffc\n").unwrap_err();
        assert_eq!(err.to_string(), "t.cfg:2:3: file is not valid UTF-8");
    }
}
