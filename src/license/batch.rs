//! Batch files of `csm license gen --count N --out FILE`: one row per license, in CSV
//! (through the csv crate) or JSON lines. Pure: the caller writes the text (atomically).

use super::code::READING_ORDER;
use super::issue::Issued;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format a file name implies: CSV for `.csv` in any case, else JSON lines.
    pub fn of_path(path: &Path) -> Format {
        match path.extension() {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// What a batch holds. It decides the CSV columns: a short code has no SKU, customer or
/// features, only a digest of the product; a marketplace code is only a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// Full codes or license files.
    Licenses,
    ShortCodes,
    Marketplace,
}

impl Holds {
    /// The columns, in the order `inspect` shows the fields.
    fn columns(self) -> Vec<&'static str> {
        // How inspect describes its input, and the format version (one per form).
        const NOT_COLUMNS: [&str; 5] = ["form", "signature", "format_version", "length", "note"];
        let left_out: &[&str] = match self {
            Holds::Marketplace => return vec!["code"],
            Holds::ShortCodes => &["product", "sku", "customer", "features"],
            Holds::Licenses => &["product_digest"],
        };
        READING_ORDER
            .into_iter()
            .filter(|c| !NOT_COLUMNS.contains(c) && !left_out.contains(c))
            .collect()
    }
}

/// The batch file's text. JSON lines hold each license's fields; CSV the columns of what the
/// batch holds, with the code (or a license file's JSON) last. Errors start with `csv:`.
pub fn render(format: Format, holds: Holds, licenses: &[Issued]) -> Result<String, String> {
    match format {
        Format::Jsonl => Ok(licenses.iter().map(|i| format!("{}\n", i.fields)).collect()),
        Format::Csv => csv_text(holds, licenses).map_err(|e| format!("csv: {e}")),
    }
}

fn csv_text(holds: Holds, licenses: &[Issued]) -> Result<String, Box<dyn std::error::Error>> {
    let cols = holds.columns();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&cols)?;
    for i in licenses {
        let row = cols.iter().map(|&c| match (c, &i.fields[c]) {
            // The text as issued: the code, or a license file's JSON document.
            ("code", _) => i.text.clone(),
            ("features", Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            (_, Value::String(s)) => s.clone(),
            (_, Value::Null) => String::new(),
            (_, v) => v.to_string(),
        });
        w.write_record(row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_follow_what_the_batch_holds() {
        let full = Issued {
            text: "0AB-CD".into(),
            fields: json!({"license_id": "00ff", "product": "P, \"Q\"", "features": ["a", "b"],
                           "seats": 3, "code": "0AB-CD"}),
        };
        let text = render(Format::Csv, Holds::Licenses, std::slice::from_ref(&full)).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "license_id,key_id,serial,product,sku,customer,issued,expires,grace_days,seats,features,code"
        );
        assert_eq!(
            lines.next().unwrap(),
            "00ff,,,\"P, \"\"Q\"\"\",,,,,,3,\"a,b\",0AB-CD"
        );
        let file = Issued {
            text: "{\"format\":\"csm-license\"}".into(),
            fields: json!({"license": {"format": "csm-license"}}),
        };
        let text = render(Format::Csv, Holds::Licenses, std::slice::from_ref(&file)).unwrap();
        assert!(
            text.ends_with(",\"{\"\"format\"\":\"\"csm-license\"\"}\"\n"),
            "{text}"
        );
        let jsonl = render(Format::Jsonl, Holds::Licenses, &[full, file]).unwrap();
        assert_eq!(jsonl.lines().count(), 2);
        let short = render(Format::Csv, Holds::ShortCodes, &[]).unwrap();
        assert!(
            short.contains("product_digest") && !short.contains("sku"),
            "{short}"
        );
        assert_eq!(Format::of_path(Path::new("a.CSV")), Format::Csv);
        assert_eq!(Format::of_path(Path::new("a.csv.jsonl")), Format::Jsonl);
    }
}
