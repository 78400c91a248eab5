//! Row-at-a-time Arrow builders for the retained tables: one typed builder per column,
//! filled in schema order.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Decimal128Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, UInt16Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use footfall_operators::time::Timestamp;
use rust_decimal::Decimal;

/// Money columns: `Decimal128(18, 2)`.
pub const MONEY: DataType = DataType::Decimal128(18, 2);

/// Time columns: nanoseconds, UTC.
pub fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// Low-cardinality text (event type, channel, store, currency, category): a dictionary
/// per batch. A batch holds at most [`BATCH_ROWS`] rows, so 16-bit keys never overflow.
pub fn label() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
}

/// Rows per sealed batch.
pub const BATCH_ROWS: usize = 8192;

/// A column's kind, as a table declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Label,
    Time,
    Money,
    Float,
    Int,
    /// 32-bit: counts of items.
    SmallInt,
    /// 32-bit: measurements that need no more (a location's accuracy in metres).
    SmallFloat,
    Bool,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Label => label(),
            Kind::Time => utc(),
            Kind::Money => MONEY,
            Kind::Float => DataType::Float64,
            Kind::Int => DataType::Int64,
            Kind::SmallInt => DataType::Int32,
            Kind::SmallFloat => DataType::Float32,
            Kind::Bool => DataType::Boolean,
        }
    }
}

/// A schema from `(name, kind, nullable)` columns.
pub fn schema(columns: &[(&str, Kind, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, k, null)| Field::new(*n, k.data_type(), *null))
            .collect::<Vec<_>>(),
    ))
}

enum Col {
    Text(StringBuilder),
    Label(StringDictionaryBuilder<UInt16Type>),
    Time(TimestampNanosecondBuilder),
    Money(Decimal128Builder),
    Float(Float64Builder),
    Int(Int64Builder),
    SmallInt(Int32Builder),
    SmallFloat(Float32Builder),
    Bool(BooleanBuilder),
}

/// Builds one table's rows; [`finish`](Self::finish) seals them into a batch.
pub struct Rows {
    schema: SchemaRef,
    cols: Vec<Col>,
    next: usize,
    len: usize,
}

impl Rows {
    /// Empty rows of `schema` (whose types are those of [`Kind`]).
    pub fn new(schema: SchemaRef) -> Self {
        let cols = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Col::Text(StringBuilder::new()),
                DataType::Dictionary(..) => Col::Label(StringDictionaryBuilder::new()),
                DataType::Timestamp(..) => Col::Time(TimestampNanosecondBuilder::new()),
                DataType::Decimal128(..) => Col::Money(Decimal128Builder::new()),
                DataType::Float64 => Col::Float(Float64Builder::new()),
                DataType::Float32 => Col::SmallFloat(Float32Builder::new()),
                DataType::Int32 => Col::SmallInt(Int32Builder::new()),
                DataType::Boolean => Col::Bool(BooleanBuilder::new()),
                _ => Col::Int(Int64Builder::new()),
            })
            .collect();
        Rows {
            schema,
            cols,
            next: 0,
            len: 0,
        }
    }

    fn col(&mut self) -> &mut Col {
        let i = self.next;
        self.next += 1;
        &mut self.cols[i]
    }

    /// The next column's text.
    pub fn text(&mut self, v: Option<&str>) -> &mut Self {
        match self.col() {
            Col::Text(b) => b.append_option(v),
            Col::Label(b) => match v {
                Some(v) => {
                    b.append_value(v);
                }
                None => b.append_null(),
            },
            _ => unreachable!("column is not text"),
        }
        self
    }

    /// The next column's instant.
    pub fn time(&mut self, v: Option<Timestamp>) -> &mut Self {
        let Col::Time(b) = self.col() else {
            unreachable!("column is not a time")
        };
        b.append_option(v.map(|t| t.as_nanos()));
        self
    }

    /// The next column's money, rounded to cents.
    pub fn money(&mut self, v: Option<Decimal>) -> &mut Self {
        let Col::Money(b) = self.col() else {
            unreachable!("column is not money")
        };
        b.append_option(v.map(cents));
        self
    }

    /// The next column's float.
    pub fn float(&mut self, v: Option<f64>) -> &mut Self {
        match self.col() {
            Col::Float(b) => b.append_option(v),
            Col::SmallFloat(b) => b.append_option(v.map(|v| v as f32)),
            _ => unreachable!("column is not a float"),
        }
        self
    }

    /// The next column's integer.
    pub fn int(&mut self, v: Option<i64>) -> &mut Self {
        match self.col() {
            Col::Int(b) => b.append_option(v),
            Col::SmallInt(b) => {
                b.append_option(v.map(|v| v.clamp(i32::MIN.into(), i32::MAX.into()) as i32))
            }
            _ => unreachable!("column is not an integer"),
        }
        self
    }

    /// The next column's truth value.
    pub fn bool(&mut self, v: Option<bool>) -> &mut Self {
        let Col::Bool(b) = self.col() else {
            unreachable!("column is not a bool")
        };
        b.append_option(v);
        self
    }

    /// Ends the row: every column must have had its value.
    pub fn end(&mut self) {
        assert_eq!(self.next, self.cols.len(), "a row misses columns");
        self.next = 0;
        self.len += 1;
    }

    /// Rows since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row was added since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows as a batch; the builders start over.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(c, f)| -> ArrayRef {
                match c {
                    Col::Text(b) => Arc::new(b.finish()),
                    Col::Label(b) => Arc::new(b.finish()),
                    Col::Time(b) => Arc::new(b.finish().with_data_type(f.data_type().clone())),
                    Col::Money(b) => Arc::new(
                        b.finish()
                            .with_precision_and_scale(18, 2)
                            .expect("18, 2 is a valid decimal"),
                    ),
                    Col::Float(b) => Arc::new(b.finish()),
                    Col::Int(b) => Arc::new(b.finish()),
                    Col::SmallInt(b) => Arc::new(b.finish()),
                    Col::SmallFloat(b) => Arc::new(b.finish()),
                    Col::Bool(b) => Arc::new(b.finish()),
                }
            })
            .map(|mut a: ArrayRef| {
                // Builders grow by doubling: a retained batch keeps only what it uses.
                if let Some(a) = Arc::get_mut(&mut a) {
                    a.shrink_to_fit();
                }
                a
            })
            .collect();
        self.len = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

/// `d` in cents (rounded half to even, as money is).
pub fn cents(d: Decimal) -> i128 {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d.mantissa()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Decimal128Array};

    #[test]
    fn rows_fill_their_columns_in_order_and_money_is_in_cents() {
        let s = schema(&[
            ("id", Kind::Text, false),
            ("type", Kind::Label, false),
            ("value", Kind::Money, true),
        ]);
        let mut r = Rows::new(s);
        r.text(Some("a"))
            .text(Some("purchase"))
            .money(Some(Decimal::new(1290, 2)));
        r.end();
        r.text(Some("b"))
            .text(Some("purchase"))
            .money(Some(Decimal::new(12345, 3)));
        r.end();
        let b = r.finish().unwrap();
        assert_eq!(b.num_rows(), 2);
        let v = b
            .column(2)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap();
        assert_eq!(v.value(0), 1290);
        assert_eq!(v.value(1), 1234, "12.345 rounds half to even: 12.34");
        assert!(r.is_empty());
    }
}
