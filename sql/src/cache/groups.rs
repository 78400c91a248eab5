//! Groups kept between runs: each group's key, in Arrow's row format, and the counts and
//! sums of its rows. Rows are added to them and subtracted from them; a group left
//! without rows is dropped.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Int64Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::{Result, internal_err};
use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

/// Arena bytes held by dropped groups' keys past which the arena is rewritten.
const COMPACT_AFTER: usize = 1 << 20;

/// What an aggregate keeps per group.
pub(super) enum Acc {
    /// `count(*)`: the group's rows, which every group keeps anyway.
    Rows,
    /// `count(x)`: the rows where `x` is not null.
    Count(Vec<i64>),
    /// `sum(x)` of 64-bit integers (wrapping, as DataFusion sums them), and how many
    /// were not null.
    SumI64 { sum: Vec<i64>, n: Vec<i64> },
    /// `sum(x)` of decimals (unscaled, wrapping), and how many were not null.
    SumDecimal { sum: Vec<i128>, n: Vec<i64> },
}

impl Acc {
    fn push(&mut self) {
        match self {
            Acc::Rows => {}
            Acc::Count(n) => n.push(0),
            Acc::SumI64 { sum, n } => {
                sum.push(0);
                n.push(0);
            }
            Acc::SumDecimal { sum, n } => {
                sum.push(0);
                n.push(0);
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Acc::Rows => 0,
            Acc::Count(n) => n.capacity() * 8,
            Acc::SumI64 { sum, n } => (sum.capacity() + n.capacity()) * 8,
            Acc::SumDecimal { sum, n } => sum.capacity() * 16 + n.capacity() * 8,
        }
    }

    /// Whether group `g` holds nothing (what a group without rows must hold).
    fn is_zero(&self, g: usize) -> bool {
        match self {
            Acc::Rows => true,
            Acc::Count(n) => n[g] == 0,
            Acc::SumI64 { sum, n } => sum[g] == 0 && n[g] == 0,
            Acc::SumDecimal { sum, n } => sum[g] == 0 && n[g] == 0,
        }
    }
}

/// Groups by key, with their rows' counts and sums.
pub(super) struct Groups {
    converter: RowConverter,
    /// Group slots by the hash of their key.
    table: HashTable<u32>,
    /// Every group's key, where `spans` says.
    arena: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// Rows per group slot; 0 for a free slot.
    rows: Vec<i64>,
    accs: Vec<Acc>,
    free: Vec<u32>,
    /// Arena bytes of dropped groups.
    garbage: usize,
}

impl Groups {
    /// Groups keyed by values of `key_types`, keeping `accs`.
    pub(super) fn new(key_types: &[DataType], accs: Vec<Acc>) -> Result<Self> {
        let fields = key_types.iter().cloned().map(SortField::new).collect();
        Ok(Groups {
            converter: RowConverter::new(fields)?,
            table: HashTable::new(),
            arena: Vec::new(),
            spans: Vec::new(),
            rows: Vec::new(),
            accs,
            free: Vec::new(),
            garbage: 0,
        })
    }

    /// Group slots, live or free.
    pub(super) fn slots(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn is_live(&self, g: u32) -> bool {
        self.rows[g as usize] > 0
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.arena.capacity()
            + self.spans.capacity() * 8
            + self.rows.capacity() * 8
            + self.free.capacity() * 4
            + self.table.capacity() * 5
            + self.accs.iter().map(Acc::bytes).sum::<usize>()
    }

    fn key<'a>(arena: &'a [u8], spans: &[(u32, u32)], g: u32) -> &'a [u8] {
        let (at, len) = spans[g as usize];
        &arena[at as usize..(at + len) as usize]
    }

    /// A new group of key `k`.
    fn insert(&mut self, k: &[u8], hash: u64) -> Result<u32> {
        let at = self.arena.len();
        if at + k.len() > u32::MAX as usize {
            return internal_err!("the kept groups' keys outgrew 4 GiB");
        }
        self.arena.extend_from_slice(k);
        let span = (at as u32, k.len() as u32);
        let g = match self.free.pop() {
            Some(g) => {
                self.spans[g as usize] = span;
                g
            }
            None => {
                self.spans.push(span);
                self.rows.push(0);
                for a in &mut self.accs {
                    a.push();
                }
                (self.rows.len() - 1) as u32
            }
        };
        let (arena, spans) = (&self.arena, &self.spans);
        self.table
            .insert_unique(hash, g, |&g| xxh3_64(Self::key(arena, spans, g)));
        Ok(g)
    }

    /// Adds (`sign` 1) or subtracts (`sign` -1) rows: their group keys `keys` and each
    /// aggregate's input `args` (`None` for `count(*)`). Each group touched is pushed to
    /// `touched`, possibly more than once.
    pub(super) fn apply(
        &mut self,
        keys: &[ArrayRef],
        args: &[Option<ArrayRef>],
        sign: i64,
        touched: &mut Vec<u32>,
    ) -> Result<()> {
        let rows = self.converter.convert_columns(keys)?;
        let inputs: Vec<Input> = args.iter().map(Input::of).collect();
        for i in 0..rows.num_rows() {
            let k = rows.row(i);
            let k = k.as_ref();
            let hash = xxh3_64(k);
            let (arena, spans) = (&self.arena, &self.spans);
            let g = match self.table.find(hash, |&g| Self::key(arena, spans, g) == k) {
                Some(&g) => g,
                None if sign > 0 => self.insert(k, hash)?,
                None => return internal_err!("subtracting a row from a group no run added"),
            };
            touched.push(g);
            let gi = g as usize;
            self.rows[gi] += sign;
            for (acc, input) in self.accs.iter_mut().zip(&inputs) {
                add(acc, input, i, gi, sign);
            }
        }
        Ok(())
    }

    /// Drops the groups of `touched` left without rows; returns them.
    pub(super) fn drop_empty(&mut self, touched: &[u32]) -> Result<Vec<u32>> {
        let mut dropped = Vec::new();
        for &g in touched {
            let gi = g as usize;
            if self.rows[gi] != 0 {
                continue;
            }
            if !self.accs.iter().all(|a| a.is_zero(gi)) {
                return internal_err!("a group without rows still counts something");
            }
            let (arena, spans) = (&self.arena, &self.spans);
            let k = Self::key(arena, spans, g);
            match self.table.find_entry(xxh3_64(k), |&x| x == g) {
                Ok(e) => {
                    e.remove();
                }
                Err(_) => return internal_err!("a kept group is missing from its table"),
            }
            self.garbage += spans[gi].1 as usize;
            self.spans[gi] = (0, 0);
            self.free.push(g);
            dropped.push(g);
        }
        if self.garbage > COMPACT_AFTER && self.garbage * 4 > self.arena.len() {
            self.compact();
        }
        Ok(dropped)
    }

    /// Rewrites the arena without the dropped groups' keys.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for (g, span) in self.spans.iter_mut().enumerate() {
            if self.rows[g] == 0 {
                continue;
            }
            let (at, len) = *span;
            let new = arena.len() as u32;
            arena.extend_from_slice(&self.arena[at as usize..(at + len) as usize]);
            *span = (new, len);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Gives back what growth left unused, once it is more than the groups hold: kept
    /// between runs, spare capacity would otherwise cost up to as much again as they
    /// hold. What is left (half as much again) lets the next runs' new groups in
    /// without growing again: shrinking to fit would have every run grow, and rehash,
    /// everything.
    pub(super) fn shrink(&mut self) {
        fn fit<T>(v: &mut Vec<T>) {
            let len = v.len();
            if v.capacity() > 2 * len + 4096 {
                v.shrink_to(len + len / 2);
            }
        }
        fit(&mut self.arena);
        fit(&mut self.spans);
        fit(&mut self.rows);
        fit(&mut self.free);
        for a in &mut self.accs {
            match a {
                Acc::Rows => {}
                Acc::Count(n) => fit(n),
                Acc::SumI64 { sum, n } => {
                    fit(sum);
                    fit(n);
                }
                Acc::SumDecimal { sum, n } => {
                    fit(sum);
                    fit(n);
                }
            }
        }
        let len = self.table.len();
        if self.table.capacity() > 3 * len + 4096 {
            let (arena, spans) = (&self.arena, &self.spans);
            self.table
                .shrink_to(len + len / 2, |&g| xxh3_64(Self::key(arena, spans, g)));
        }
    }

    /// The key columns of `groups`.
    pub(super) fn keys(&self, groups: &[u32]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let rows = groups
            .iter()
            .map(|&g| parser.parse(Self::key(&self.arena, &self.spans, g)));
        Ok(self.converter.convert_rows(rows)?)
    }

    /// Aggregate `i`'s values for `groups`, as `data_type`.
    pub(super) fn values(&self, i: usize, groups: &[u32], data_type: &DataType) -> ArrayRef {
        match &self.accs[i] {
            Acc::Rows => std::sync::Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|&g| self.rows[g as usize]),
            )),
            Acc::Count(n) => std::sync::Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|&g| n[g as usize]),
            )),
            Acc::SumI64 { sum, n } => std::sync::Arc::new(
                groups
                    .iter()
                    .map(|&g| (n[g as usize] > 0).then(|| sum[g as usize]))
                    .collect::<Int64Array>(),
            ),
            Acc::SumDecimal { sum, n } => {
                let a: Decimal128Array = groups
                    .iter()
                    .map(|&g| (n[g as usize] > 0).then(|| sum[g as usize]))
                    .collect();
                match data_type {
                    DataType::Decimal128(p, s) => std::sync::Arc::new(
                        a.with_precision_and_scale(*p, *s)
                            .expect("a sum's precision and scale are valid"),
                    ),
                    _ => std::sync::Arc::new(a),
                }
            }
        }
    }
}

/// An aggregate's input, ready to read row by row.
enum Input<'a> {
    None,
    /// Which rows are not null (`None`: all).
    Valid(Option<NullBuffer>),
    I64(&'a Int64Array),
    Decimal(&'a Decimal128Array),
}

impl<'a> Input<'a> {
    fn of(arg: &'a Option<ArrayRef>) -> Self {
        let Some(a) = arg else {
            return Input::None;
        };
        if let Some(a) = a.as_primitive_opt::<Int64Type>() {
            return Input::I64(a);
        }
        if let Some(a) = a.as_primitive_opt::<Decimal128Type>() {
            return Input::Decimal(a);
        }
        Input::Valid(a.logical_nulls())
    }
}

impl Input<'_> {
    fn is_valid(&self, i: usize) -> bool {
        match self {
            Input::None => true,
            Input::Valid(v) => v.as_ref().is_none_or(|v| v.is_valid(i)),
            Input::I64(a) => a.is_valid(i),
            Input::Decimal(a) => a.is_valid(i),
        }
    }
}

/// Adds row `i` of `input` to group `g` of `acc`, `sign` times.
fn add(acc: &mut Acc, input: &Input, i: usize, g: usize, sign: i64) {
    if !input.is_valid(i) {
        return;
    }
    match (acc, input) {
        (Acc::Count(n), _) => n[g] += sign,
        (Acc::SumI64 { sum, n }, Input::I64(a)) => {
            sum[g] = sum[g].wrapping_add(a.value(i).wrapping_mul(sign));
            n[g] += sign;
        }
        (Acc::SumDecimal { sum, n }, Input::Decimal(a)) => {
            sum[g] = sum[g].wrapping_add(a.value(i).wrapping_mul(sign as i128));
            n[g] += sign;
        }
        // `count(*)` keeps nothing of its own; the planner checked the other pairs.
        _ => {}
    }
}
