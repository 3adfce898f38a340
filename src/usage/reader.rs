//! Streaming readers for CSV (with a header) and JSONL input, one record per line.
//! Memory stays flat with file size: one line at a time, and a line longer than
//! [`MAX_LINE`] is skipped to its end without being held, then reported.

use super::encoding::{self, Decoded, Encoding};
use super::record::{is_info_field, show, RawRecord, FIELDS, REQUIRED};
use crate::protocol::json::{self, Json};
use std::io::{BufRead, BufReader};

/// No legitimate record comes near this; a longer line is an error, not a buffer.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// By extension: `.jsonl`, `.ndjson`, `.json` are JSONL; everything else CSV.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// A problem with one line (or the header, line 1). The whole file is still read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    /// The one field the line breaks a rule of, when it is one field's (not for a line that
    /// cannot be read, or a record that clashes with another).
    pub field: Option<&'static str>,
    pub message: String,
}

enum Line {
    Text(String),
    /// Too long, or not text in the input's encoding: the message says which.
    Bad(String),
}

/// Reads `\n`-terminated lines with a bound on their length.
struct Lines<R> {
    inner: R,
    line_no: u64,
    buf: Vec<u8>,
    /// What the bytes were before they reached `inner` (GB18030 is decoded on the way).
    encoding: Encoding,
}

impl<R: BufRead> Lines<R> {
    fn next_line(&mut self) -> std::io::Result<Option<(u64, Line)>> {
        self.buf.clear();
        let mut total = 0usize;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            total += take;
            if self.buf.len() <= MAX_LINE {
                let room = (MAX_LINE + 1).saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&chunk[..take.min(room)]);
            }
            self.inner.consume(take);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
            total -= 1;
        }
        if self.line_no == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
            self.buf.drain(..3);
        }
        if total > MAX_LINE {
            let m = format!("line is {total} bytes long (at most {MAX_LINE})");
            return Ok(Some((self.line_no, Line::Bad(m))));
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((self.line_no, Line::Text(s.to_string())))),
            Err(e) => Ok(Some((
                self.line_no,
                Line::Bad(self.not_text(e.valid_up_to())),
            ))),
        }
    }

    /// Why the line is not text; `valid` bytes of it were.
    fn not_text(&self, valid: usize) -> String {
        match self.encoding {
            Encoding::Utf8 if encoding::reads_as_gb18030(&self.buf) => format!(
                "not valid UTF-8 (at byte {} of the line); it reads as GB18030, the encoding \
                 Chinese Excel saves CSV in: add --encoding gb18030",
                valid + 1
            ),
            // Excel's "Unicode text" is UTF-16: every other byte of ASCII text is zero.
            Encoding::Utf8 if looks_utf16(&self.buf) => format!(
                "not valid UTF-8 (at byte {} of the line); it looks like UTF-16 (Excel's \
                 \"Unicode text\"): save the file as \"CSV UTF-8\" instead",
                valid + 1
            ),
            Encoding::Utf8 => format!("not valid UTF-8 (at byte {} of the line)", valid + 1),
            // The decoder marked the bad bytes; what came before them is text.
            Encoding::Gb18030 => format!(
                "not valid GB18030 (at character {} of the line)",
                String::from_utf8_lossy(&self.buf[..valid]).chars().count() + 1
            ),
        }
    }
}

/// A UTF-16 byte-order mark, or text whose every other byte is zero.
fn looks_utf16(line: &[u8]) -> bool {
    if line.starts_with(b"\xFF\xFE") || line.starts_with(b"\xFE\xFF") {
        return true;
    }
    let zeros = line.iter().filter(|&&b| b == 0).count();
    line.len() >= 4 && zeros * 3 >= line.len()
}

/// Yields `(line, raw record)` or a line error, in file order.
pub struct RecordReader<R> {
    lines: Lines<R>,
    format: Format,
    /// CSV: the field each column maps to.
    columns: Option<Vec<String>>,
    header_failed: bool,
    /// Lines that hold (or should hold) a record: not blank, not the CSV header.
    data_lines: u64,
    /// Data lines after a bad header: they cannot be read, and are not checked.
    unchecked: u64,
}

impl<'a> RecordReader<Box<dyn BufRead + 'a>> {
    /// Reads `inner`, whose bytes are text in `encoding`: GB18030 is decoded to UTF-8 as
    /// it is read (streamed, a buffer at a time).
    pub fn decoding(inner: impl BufRead + 'a, format: Format, encoding: Encoding) -> Self {
        let inner: Box<dyn BufRead + 'a> = match encoding {
            Encoding::Utf8 => Box::new(inner),
            Encoding::Gb18030 => {
                Box::new(BufReader::with_capacity(1 << 16, Decoded::gb18030(inner)))
            }
        };
        let mut r = RecordReader::new(inner, format);
        r.lines.encoding = encoding;
        r
    }
}

impl<R: BufRead> RecordReader<R> {
    /// Reads UTF-8 input.
    pub fn new(inner: R, format: Format) -> Self {
        RecordReader {
            lines: Lines {
                inner,
                line_no: 0,
                buf: Vec::new(),
                encoding: Encoding::Utf8,
            },
            format,
            columns: None,
            header_failed: false,
            data_lines: 0,
            unchecked: 0,
        }
    }

    /// Lines read so far that hold a record or should: every line but blank ones and the
    /// CSV header. Each is a record, a line error, or [`RecordReader::unchecked`].
    pub fn data_lines(&self) -> u64 {
        self.data_lines
    }

    /// Data lines not checked because the CSV header was bad (its error says so, once).
    pub fn unchecked(&self) -> u64 {
        self.unchecked
    }

    /// Nothing was read but blank lines: no record and, for CSV, not even a header.
    pub fn held_nothing(&self) -> bool {
        self.data_lines == 0 && self.columns.is_none() && !self.header_failed
    }

    /// The CSV header was bad: one of the line errors is the header's, not a record's.
    pub fn header_failed(&self) -> bool {
        self.header_failed
    }

    /// The next line is where the CSV header should be.
    fn at_header(&self) -> bool {
        self.format == Format::Csv && self.columns.is_none() && !self.header_failed
    }

    /// Next record or line error; `Ok(None)` at the end; `Err` only on an I/O error.
    pub fn next_record(&mut self) -> std::io::Result<Option<Result<(u64, RawRecord), LineError>>> {
        loop {
            let Some((no, line)) = self.lines.next_line()? else {
                return Ok(None);
            };
            let text = match line {
                Line::Bad(message) => {
                    if self.at_header() {
                        // Unreadable where the header should be: the header is bad.
                        self.header_failed = true;
                        let message = format!("header: {message}");
                        return Ok(Some(Err(LineError {
                            line: no,
                            field: None,
                            message,
                        })));
                    }
                    self.data_lines += 1;
                    return Ok(Some(Err(LineError {
                        line: no,
                        field: None,
                        message,
                    })));
                }
                Line::Text(t) => t,
            };
            if text.trim().is_empty() {
                continue;
            }
            if !self.at_header() {
                self.data_lines += 1;
            }
            let parsed = match self.format {
                Format::Jsonl => parse_jsonl(&text),
                Format::Csv => {
                    if self.at_header() {
                        match parse_header(&text) {
                            Ok(c) => self.columns = Some(c),
                            Err(m) => {
                                self.header_failed = true;
                                // JSON lines in a file named otherwise (.txt, .log).
                                let m = if text.trim_start().starts_with('{') {
                                    format!("{m}; the line is a JSON object: for JSON lines pass --format jsonl")
                                } else if looks_utf16(text.as_bytes()) {
                                    format!("{m}; the file looks like UTF-16 (Excel's \"Unicode text\"): save it as \"CSV UTF-8\" instead")
                                } else {
                                    m
                                };
                                return Ok(Some(Err(LineError {
                                    line: no,
                                    field: None,
                                    message: m,
                                })));
                            }
                        }
                        continue;
                    }
                    match &self.columns {
                        Some(cols) => parse_csv_row(cols, &text).map_err(|m| (None, m)),
                        // The header was bad: the rows cannot be read, and one error says so.
                        None => {
                            self.unchecked += 1;
                            continue;
                        }
                    }
                }
            };
            return Ok(Some(parsed.map(|r| (no, r)).map_err(|(field, message)| {
                LineError {
                    line: no,
                    field,
                    message,
                }
            })));
        }
    }
}

/// Splits one CSV line (RFC 4180 quoting; a quoted field cannot span lines).
pub fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut col = 1;
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                    None => {
                        return Err(format!(
                            "column {col}: quoted field not closed before the end of the line"
                        ))
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut cur));
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => {
                    return Err(format!(
                        "column {col}: {c:?} after a closing quote (expected ',')"
                    ))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(std::mem::take(&mut cur));
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(format!(
                            "column {col}: '\"' inside an unquoted field (quote the whole field)"
                        ))
                    }
                    Some(c) => cur.push(c),
                }
            }
        }
        fields.push(std::mem::take(&mut cur));
        col += 1;
    }
}

fn parse_header(line: &str) -> Result<Vec<String>, String> {
    csv_header(line, "a usage field", &FIELDS, &REQUIRED, is_info_field)
}

/// A CSV header: column names that are each one of `fields` (or `extra` accepts them), none
/// twice, every one of `required` there. `what` names a field in errors ("a usage field").
pub fn csv_header(
    line: &str,
    what: &str,
    fields: &[&str],
    required: &[&str],
    extra: fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let cols: Vec<String> = split_csv_line(line)
        .map_err(|m| format!("header: {m}"))?
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    for (i, c) in cols.iter().enumerate() {
        if !fields.contains(&c.as_str()) && !extra(c) {
            // A spreadsheet's export in a locale that separates with ';' (or a TSV file).
            let separator = [';', '\t']
                .into_iter()
                .find(|s| c.split(*s).any(|part| fields.contains(&part.trim())));
            let hint = match separator {
                Some(s) => format!("; the columns seem separated by {s:?}: csm reads commas"),
                None => String::new(),
            };
            return Err(format!(
                "header: column {} {} is not {what} (expected some of {}){hint}",
                i + 1,
                show(c),
                fields.join(", ")
            ));
        }
        if cols[..i].contains(c) {
            return Err(format!("header: column {} appears twice", show(c)));
        }
    }
    for r in required {
        if !cols.iter().any(|c| c == r) {
            return Err(format!(
                "header: required column {r:?} is missing (required: {})",
                required.join(", ")
            ));
        }
    }
    Ok(cols)
}

/// A data row's values, one per header column (usage records and the agent's events).
pub fn row_values(cols: &[String], line: &str) -> Result<Vec<String>, String> {
    let values = split_csv_line(line)?;
    if values.len() != cols.len() {
        return Err(format!(
            "{} columns, the header has {} ({})",
            values.len(),
            cols.len(),
            cols.join(", ")
        ));
    }
    Ok(values)
}

fn parse_csv_row(cols: &[String], line: &str) -> Result<RawRecord, String> {
    let values = row_values(cols, line)?;
    let mut raw = RawRecord::default();
    for (c, v) in cols.iter().zip(values) {
        raw.set(c, v);
    }
    Ok(raw)
}

/// A JSONL line's problem: the usage field it concerns, when it is one, and the message.
type JsonlError = (Option<&'static str>, String);

/// The usage field named `key`, as the error's `field` names it.
fn usage_field(key: &str) -> Option<&'static str> {
    FIELDS.iter().copied().find(|f| *f == key)
}

fn parse_jsonl(line: &str) -> Result<RawRecord, JsonlError> {
    // A record must not say two things: a repeated key is an error, not "last one wins".
    let v = json::parse_unique(line.as_bytes()).map_err(|e| match e {
        json::UniqueError::RepeatedKey(k) => {
            (usage_field(&k), format!("field {} appears twice", show(&k)))
        }
        json::UniqueError::Invalid(e) => (
            None,
            e.to_string()
                .replacen("body: not JSON", "not valid JSON", 1),
        ),
    })?;
    let Json::Object(members) = v else {
        return Err((
            None,
            "not a JSON object (one record object per line)".into(),
        ));
    };
    // What the fields are comes first: a key that is not a usage field is that, whatever its
    // value and whatever the other fields hold.
    if let Some((k, _)) = members
        .iter()
        .find(|(k, _)| usage_field(k).is_none() && !is_info_field(k))
    {
        return Err((
            None,
            format!(
                "field {} is not a usage field (expected some of {})",
                show(k),
                FIELDS.join(", ")
            ),
        ));
    }
    let mut raw = RawRecord::default();
    let mut nulls = Vec::new();
    for (k, v) in members {
        let field = usage_field(&k);
        let text = match v {
            // Null is "not given" for an optional field; a required one says it was null.
            Json::Null => {
                nulls.push(k);
                continue;
            }
            Json::String(s) => s,
            Json::Number(n) if k == "usage_value" || field.is_none() => n,
            other => {
                return Err((
                    field,
                    format!(
                        "field {}: must be a string{} (got {})",
                        show(&k),
                        if k == "usage_value" {
                            " or a number"
                        } else {
                            ""
                        },
                        kind(&other)
                    ),
                ))
            }
        };
        if field.is_some() {
            raw.set(&k, text);
        }
    }
    for r in REQUIRED {
        let present = match r {
            "instance_id" => raw.instance_id.is_some(),
            "begin_time" => raw.begin_time.is_some(),
            "end_time" => raw.end_time.is_some(),
            _ => raw.usage_value.is_some(),
        };
        if !present && nulls.iter().any(|n| n == r) {
            return Err((
                Some(r),
                format!("field {r:?} is null (required: give a value)"),
            ));
        }
        if !present {
            return Err((Some(r), format!("field {r:?} is missing (required)")));
        }
    }
    Ok(raw)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], f: Format) -> Vec<Result<(u64, RawRecord), LineError>> {
        let mut r = RecordReader::new(std::io::BufReader::new(data), f);
        let mut out = vec![];
        while let Some(x) = r.next_record().unwrap() {
            out.push(x);
        }
        out
    }

    #[test]
    fn csv_lines_and_numbers() {
        let data = b"\xEF\xBB\xBFinstance_id,begin_time,end_time,usage_value\r\n\
i1,20260110T100000Z,20260110T110000Z,1.5\r\n\
\r\n\
\"i,2\",20260110T100000Z,20260110T110000Z,\"2\"\n\
i3,a,b\n\
i4,\"x\"y,b,c\n";
        let out = read_all(data, Format::Csv);
        assert_eq!(out.len(), 4);
        let (l, r) = out[0].clone().unwrap();
        assert_eq!(l, 2);
        assert_eq!(r.usage_value.as_deref(), Some("1.5"));
        let (l, r) = out[1].clone().unwrap();
        assert_eq!((l, r.instance_id.as_deref()), (4, Some("i,2")));
        let e = out[2].clone().unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e
            .message
            .contains("3 columns, the header has 4 (instance_id, "));
        assert!(out[3]
            .clone()
            .unwrap_err()
            .message
            .contains("closing quote"));
    }

    #[test]
    fn csv_header_rules() {
        let e = read_all(b"instance_id,begin_time,end_time\ni,a,b\n", Format::Csv);
        assert_eq!(e.len(), 1);
        assert!(e[0].clone().unwrap_err().message.contains("usage_value"));
        let e = read_all(
            b"instance_id,begin_time,end_time,usage_value,colour\n",
            Format::Csv,
        );
        assert!(e[0].clone().unwrap_err().message.contains("colour"));
        // Another separator: said, not just "not a usage field".
        for (data, sep) in [
            (&b"instance_id;begin_time;end_time;usage_value\n"[..], "';'"),
            (
                &b"instance_id\tbegin_time\tend_time\tusage_value\n"[..],
                "'\\t'",
            ),
        ] {
            let m = read_all(data, Format::Csv)[0].clone().unwrap_err().message;
            assert!(
                m.contains(&format!(
                    "the columns seem separated by {sep}: csm reads commas"
                )),
                "{m}"
            );
        }
        let m = read_all(b"instance_id,begin,end_time,usage_value\n", Format::Csv)[0]
            .clone()
            .unwrap_err()
            .message;
        assert!(!m.contains("separated"), "{m}");
    }

    #[test]
    fn jsonl_rules() {
        let data = br#"{"instance_id":"i","begin_time":"20260110T100000Z","end_time":"20260110T110000Z","usage_value":12.25}
{"instance_id":"i","begin_time":"x","end_time":"y","usage_value":"1","extra":"1"}
{"instance_id":"i"
[1]
{"instance_id":"i","begin_time":"x","end_time":"y"}
{"instance_id":"i","begin_time":"x","end_time":"y","usage_value":null}
"#;
        let out = read_all(data, Format::Jsonl);
        assert_eq!(
            out[0].clone().unwrap().1.usage_value.as_deref(),
            Some("12.25")
        );
        assert!(out[1].clone().unwrap_err().message.contains("\"extra\""));
        assert!(out[2]
            .clone()
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(out[3]
            .clone()
            .unwrap_err()
            .message
            .contains("not a JSON object"));
        assert!(out[4]
            .clone()
            .unwrap_err()
            .message
            .ends_with("\"usage_value\" is missing (required)"));
        assert!(out[5]
            .clone()
            .unwrap_err()
            .message
            .ends_with("\"usage_value\" is null (required: give a value)"));
    }

    /// A key that is not a usage field is said first, whatever its value's type; the other
    /// errors of a JSONL line name the usage field they concern.
    #[test]
    fn jsonl_errors_name_the_field() {
        let head = r#"{"instance_id":"i","begin_time":"x","end_time":"y""#;
        let err = |rest: &str| {
            read_all(format!("{head}{rest}}}\n").as_bytes(), Format::Jsonl)[0]
                .clone()
                .unwrap_err()
        };
        for value in ["1", "\"x\"", "true", "null", "[1]", "{}"] {
            // After a field that breaks a rule of its own too.
            let e = err(&format!(r#","usage_value":true,"foo":{value}"#));
            assert_eq!(
                e.message,
                "field \"foo\" is not a usage field (expected some of instance_id, begin_time, \
                 end_time, usage_value, metering_sn, relate_pkg_instance, record_time)",
                "{value}"
            );
            assert_eq!(e.field, None);
        }
        for (rest, field, says) in [
            (r#","usage_value":null"#, "usage_value", "is null"),
            ("", "usage_value", "is missing"),
            (
                r#","usage_value":true"#,
                "usage_value",
                "string or a number (got a boolean)",
            ),
            (
                r#","usage_value":1,"metering_sn":2"#,
                "metering_sn",
                "(got a number)",
            ),
            (
                r#","usage_value":1,"usage_value":2"#,
                "usage_value",
                "appears twice",
            ),
        ] {
            let e = err(rest);
            assert_eq!(e.field, Some(field), "{rest}: {}", e.message);
            assert!(e.message.contains(says), "{rest}: {}", e.message);
        }
        // A column export writes for the reader: ignored, a number too.
        let ok = read_all(
            format!("{head},\"usage_value\":1,\"result_code\":12}}\n").as_bytes(),
            Format::Jsonl,
        );
        assert!(ok[0].is_ok(), "{ok:?}");
    }

    #[test]
    fn a_file_in_another_format_says_which() {
        // UTF-16 (Excel's "Unicode text"), with and without its byte-order mark.
        let utf16: Vec<u8> = "instance_id,begin_time,end_time,usage_value\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        for bytes in [[&b"\xFF\xFE"[..], &utf16].concat(), utf16.clone()] {
            let out = read_all(&bytes, Format::Csv);
            let e = out[0].clone().unwrap_err().message;
            assert!(e.contains("looks like UTF-16"), "{e}");
        }
        // JSON lines in a file whose name says CSV.
        let out = read_all(b"{\"instance_id\":\"i\"}\n", Format::Csv);
        let e = out[0].clone().unwrap_err().message;
        assert!(e.ends_with("for JSON lines pass --format jsonl"), "{e}");
    }

    #[test]
    fn gb18030_is_decoded_and_utf8_input_says_when_it_is_gb18030() {
        let text = "instance_id,begin_time,end_time,usage_value\r\n\
                    实例-一号,20260110T100000Z,20260110T110000Z,1\r\n";
        let (gb, _, _) = encoding_rs::GB18030.encode(text);
        let mut r = RecordReader::decoding(&gb[..], Format::Csv, Encoding::Gb18030);
        let (line, rec) = r.next_record().unwrap().unwrap().unwrap();
        assert_eq!((line, rec.instance_id.as_deref()), (2, Some("实例-一号")));
        assert!(r.next_record().unwrap().is_none());
        assert_eq!(r.data_lines(), 1);
        // The same bytes read as UTF-8: an error that names the flag.
        let out = read_all(&gb, Format::Csv);
        let e = out[0].clone().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.starts_with("not valid UTF-8 (at byte "),
            "{}",
            e.message
        );
        assert!(e.message.contains("--encoding gb18030"), "{}", e.message);
        // Not GB18030 either: no hint, and with the flag the error says GB18030.
        let bad = b"instance_id,begin_time,end_time,usage_value\nab\x81,x,y,1\n";
        let e = read_all(bad, Format::Csv)[0].clone().unwrap_err();
        assert!(!e.message.contains("gb18030"), "{}", e.message);
        let mut r = RecordReader::decoding(&bad[..], Format::Csv, Encoding::Gb18030);
        let e = r.next_record().unwrap().unwrap().unwrap_err();
        assert_eq!(e.message, "not valid GB18030 (at character 3 of the line)");
        // A UTF-8 file with a BOM reads the same either way.
        let utf8 = format!("\u{FEFF}{text}");
        for enc in [Encoding::Utf8, Encoding::Gb18030] {
            let mut r = RecordReader::decoding(utf8.as_bytes(), Format::Csv, enc);
            let (_, rec) = r.next_record().unwrap().unwrap().unwrap();
            assert_eq!(rec.instance_id.as_deref(), Some("实例-一号"), "{enc:?}");
        }
    }

    #[test]
    fn long_and_binary_lines() {
        let mut data = b"instance_id,begin_time,end_time,usage_value\n".to_vec();
        data.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        data.extend(b"\ni\xff,a,b,c\ni,a,b,c\n");
        let out = read_all(&data, Format::Csv);
        assert_eq!(out.len(), 3);
        let e = out[0].clone().unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("bytes long"));
        let e = out[1].clone().unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("UTF-8"));
        assert_eq!(out[2].clone().unwrap().0, 4);
    }
}
