//! Answers as a terminal table or as JSON rows. In JSON, money (decimals) is a string,
//! as on footfall's topics, and times are RFC 3339.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use serde_json::{Map, Value};

use crate::engine::Answer;

/// The answer as a table for a terminal.
pub fn pretty(a: &Answer) -> Result<String, ArrowError> {
    if a.batches.is_empty() {
        let empty = RecordBatch::new_empty(a.schema.clone());
        return Ok(pretty_format_batches(&[empty])?.to_string());
    }
    Ok(pretty_format_batches(&a.batches)?.to_string())
}

/// The answer's rows as JSON objects, columns in order.
pub fn json_rows(a: &Answer) -> Result<Vec<Map<String, Value>>, ArrowError> {
    let opts = FormatOptions::default().with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.fZ"));
    let mut out = Vec::with_capacity(a.rows());
    for b in &a.batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..b.num_rows() {
            let mut obj = Map::new();
            for (i, f) in b.schema().fields().iter().enumerate() {
                let col = b.column(i);
                let v = if col.is_null(row) {
                    Value::Null
                } else {
                    let text = fmts[i].value(row).to_string();
                    typed(col.data_type(), text)
                };
                obj.insert(f.name().clone(), v);
            }
            out.push(obj);
        }
    }
    Ok(out)
}

fn typed(t: &DataType, text: String) -> Value {
    match t {
        DataType::Boolean => Value::Bool(text == "true"),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64 => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}
