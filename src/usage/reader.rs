//! Streaming readers for CSV (with a header) and JSONL input, one record per line.
//! Memory stays flat with file size: one line at a time, and a line longer than
//! [`MAX_LINE`] is skipped to its end without being held, then reported.

use super::record::{show, RawRecord, FIELDS, INFO_FIELDS, REQUIRED};
use crate::protocol::json::{self, Json};
use std::io::BufRead;

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
    pub message: String,
}

enum Line {
    Text(String),
    TooLong(usize),
    NotUtf8(usize),
}

/// Reads `\n`-terminated lines with a bound on their length.
struct Lines<R> {
    inner: R,
    line_no: u64,
    buf: Vec<u8>,
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
            return Ok(Some((self.line_no, Line::TooLong(total))));
        }
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(Some((self.line_no, Line::Text(s.to_string())))),
            Err(e) => Ok(Some((self.line_no, Line::NotUtf8(e.valid_up_to() + 1)))),
        }
    }
}

/// Yields `(line, raw record)` or a line error, in file order.
pub struct RecordReader<R> {
    lines: Lines<R>,
    format: Format,
    /// CSV: the field each column maps to.
    columns: Option<Vec<String>>,
    header_failed: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(inner: R, format: Format) -> Self {
        RecordReader {
            lines: Lines {
                inner,
                line_no: 0,
                buf: Vec::new(),
            },
            format,
            columns: None,
            header_failed: false,
        }
    }

    /// Next record or line error; `Ok(None)` at the end; `Err` only on an I/O error.
    pub fn next_record(&mut self) -> std::io::Result<Option<Result<(u64, RawRecord), LineError>>> {
        loop {
            let Some((no, line)) = self.lines.next_line()? else {
                return Ok(None);
            };
            let text = match line {
                Line::TooLong(n) => {
                    return Ok(Some(Err(LineError {
                        line: no,
                        message: format!("line is {n} bytes long (at most {MAX_LINE})"),
                    })))
                }
                Line::NotUtf8(at) => {
                    return Ok(Some(Err(LineError {
                        line: no,
                        message: format!("not valid UTF-8 (at byte {at} of the line)"),
                    })))
                }
                Line::Text(t) => t,
            };
            if text.trim().is_empty() {
                continue;
            }
            let parsed = match self.format {
                Format::Jsonl => parse_jsonl(&text),
                Format::Csv => {
                    if self.columns.is_none() && !self.header_failed {
                        match parse_header(&text) {
                            Ok(c) => self.columns = Some(c),
                            Err(m) => {
                                self.header_failed = true;
                                return Ok(Some(Err(LineError {
                                    line: no,
                                    message: m,
                                })));
                            }
                        }
                        continue;
                    }
                    match &self.columns {
                        Some(cols) => parse_csv_row(cols, &text),
                        // The header was bad: the rows cannot be read, and one error says so.
                        None => continue,
                    }
                }
            };
            return Ok(Some(parsed.map(|r| (no, r)).map_err(|m| LineError {
                line: no,
                message: m,
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
    let cols: Vec<String> = split_csv_line(line)
        .map_err(|m| format!("header: {m}"))?
        .into_iter()
        .map(|c| c.trim().to_string())
        .collect();
    for (i, c) in cols.iter().enumerate() {
        if !FIELDS.contains(&c.as_str()) && !INFO_FIELDS.contains(&c.as_str()) {
            return Err(format!(
                "header: column {} {} is not a usage field (expected some of {})",
                i + 1,
                show(c),
                FIELDS.join(", ")
            ));
        }
        if cols[..i].contains(c) {
            return Err(format!("header: column {} appears twice", show(c)));
        }
    }
    for r in REQUIRED {
        if !cols.iter().any(|c| c == r) {
            return Err(format!(
                "header: required column {r:?} is missing (required: {})",
                REQUIRED.join(", ")
            ));
        }
    }
    Ok(cols)
}

fn parse_csv_row(cols: &[String], line: &str) -> Result<RawRecord, String> {
    let values = split_csv_line(line)?;
    if values.len() != cols.len() {
        return Err(format!(
            "{} columns, the header has {}",
            values.len(),
            cols.len()
        ));
    }
    let mut raw = RawRecord::default();
    for (c, v) in cols.iter().zip(values) {
        raw.set(c, v);
    }
    Ok(raw)
}

fn parse_jsonl(line: &str) -> Result<RawRecord, String> {
    // A record must not say two things: a repeated key is an error, not "last one wins".
    let v = json::parse_unique(line.as_bytes()).map_err(|e| match e {
        json::UniqueError::RepeatedKey(k) => format!("field {} appears twice", show(&k)),
        json::UniqueError::Invalid(e) => format!("not valid JSON: {e}"),
    })?;
    let Json::Object(members) = v else {
        return Err("not a JSON object (one record object per line)".into());
    };
    let mut raw = RawRecord::default();
    for (k, v) in members {
        let text = match v {
            Json::Null => continue,
            Json::String(s) => s,
            Json::Number(n) if k == "usage_value" || INFO_FIELDS.contains(&k.as_str()) => n,
            other => {
                return Err(format!(
                    "field {}: must be a string{} (got {})",
                    show(&k),
                    if k == "usage_value" {
                        " or a number"
                    } else {
                        ""
                    },
                    kind(&other)
                ))
            }
        };
        if INFO_FIELDS.contains(&k.as_str()) {
            continue;
        }
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!(
                "field {} is not a usage field (expected some of {})",
                show(&k),
                FIELDS.join(", ")
            ));
        }
        raw.set(&k, text);
    }
    for r in REQUIRED {
        let present = match r {
            "instance_id" => raw.instance_id.is_some(),
            "begin_time" => raw.begin_time.is_some(),
            "end_time" => raw.end_time.is_some(),
            _ => raw.usage_value.is_some(),
        };
        if !present {
            return Err(format!("field {r:?} is missing (required)"));
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
        assert!(e.message.contains("3 columns, the header has 4"));
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
    }

    #[test]
    fn jsonl_rules() {
        let data = br#"{"instance_id":"i","begin_time":"20260110T100000Z","end_time":"20260110T110000Z","usage_value":12.25}
{"instance_id":"i","begin_time":"x","end_time":"y","usage_value":"1","extra":"1"}
{"instance_id":"i"
[1]
{"instance_id":"i","begin_time":"x","end_time":"y"}
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
        assert!(out[4].clone().unwrap_err().message.contains("usage_value"));
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
