//! Diffs computed where the data lives: two SQL databases (SQLite or
//! PostgreSQL, in any pairing) compared by fingerprints of key ranges that
//! each database computes itself, so that only the rows that differ (and
//! the hashes of the small ranges around them) are read out of them, and
//! memory holds those rows only.
//!
//! Each row's hash is the first 64 bits of the MD5 of a canonical text of
//! its identifiers and attributes (each value as text, length-prefixed,
//! `NULL` marked, a boolean as `1` or `0`), taken inside the query:
//! PostgreSQL's `md5` of that text built in SQL, and on SQLite a function
//! this module registers on its connection that builds the same text from
//! the row's values; or read from the columns PostgreSQL keeps it in
//! ([`keep_row_hashes`](crate::postgres::keep_row_hashes)). A range's fingerprint is its row count and the sums
//! of its rows' hashes (two 32-bit halves): one aggregate over the range,
//! read through the key's index. Keys are ordered by the identifier
//! columns, text bytewise in both engines (`COLLATE "C"` on PostgreSQL,
//! which [`PostgresAdapter`](crate::postgres::PostgresAdapter) gives the
//! identifier columns of the tables it creates, so their primary key
//! serves these reads; a table made otherwise is compared all the same,
//! with scans).
//!
//! The comparison starts with each table whole: equal tables cost one
//! aggregate per side. A range whose fingerprints differ is cut, at keys
//! of the side that holds more of it, into ranges of about half a `leaf`
//! of rows (at most 65,536 of them, at least `fanout`: up to 10M rows, one
//! cut reaches the leaves), whose fingerprints both sides compute; of a
//! range of at most `leaf` rows on either side the rows' hashes are read,
//! and only the rows whose hash the other side lacks (a hash covers the
//! key: a row that differs or is missing there) are read, by range and
//! hash (by key where the rows are hashed in the query: their keys come
//! with their hashes), and kept. The rows kept on each side (with their
//! parents, read on both sides, for the tree a diff is) go into an image
//! of each side, and the image of the target is diffed against the image
//! of the source as any two stores are: the changes of the [`Diff`] are
//! those a diff of the whole tables finds (its count of unchanged models
//! covers the models read).
//!
//! The keys that cut a range are every n-th of its rows (one windowed
//! query); for a whole PostgreSQL table, every n-th of a sorted sample of
//! rows at places spread evenly over the table's pages (`ctid`), which
//! reads a few hundred thousand rows instead of numbering ten million.
//! SQLite answers a statement a range (in process, a statement costs
//! little); PostgreSQL one statement for all the ranges of a cut (or of
//! up to 512 leaves), the ranges sent as one JSON list that the statement
//! joins its index reads to (`json_to_recordset`, `CROSS JOIN LATERAL`).
//!
//! A one-way sync from a range diff writes only the differing rows: open
//! the target on the image the diff read
//! ([`SqliteAdapter::open_image`](crate::sqlite::SqliteAdapter::open_image),
//! [`PostgresAdapter::connect_image`](crate::postgres::PostgresAdapter::connect_image))
//! and apply the diff from the source's image with
//! [`sync_diff_from`](diffsync::AdapterExt::sync_diff_from): the
//! adapter's own writes, transactions and checks, as for any sync.
//!
//! Text, integers, booleans, floats (by their bits) and `NULL` hash alike
//! in both engines. Hashes need not agree for the result to be exact (a
//! column SQLite holds as text and PostgreSQL as a number, say): equal
//! rows whose hashes differ are read and found equal, which costs reads,
//! not correctness. What a hash cannot do is tell two different rows
//! apart only by chance
//! (an MD5 collision, 2^-64 for a range's two sums).

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write as _;

use diffsync::{AdapterExt, Diff, LocalStore, MemoryAdapter, ValueKind};

use crate::error::{AdapterError, Result};
use crate::registry::{FlatLoader, PARENT_KEY, Registry, parent_key};
use crate::sql::{self, Dialect, Engine, SqlValue, Table, quote};

/// How the range comparison cuts and reads.
#[derive(Clone, Debug)]
pub struct RangeOptions {
    /// A range of at most this many rows on either side is read rather
    /// than cut further.
    pub leaf: usize,
    /// How many ranges a differing range is cut into.
    pub fanout: usize,
    /// When both sides' tables are in one PostgreSQL database (in two
    /// schemas), compare each table in one `FULL OUTER JOIN` the database
    /// runs, instead of by ranges (on by default).
    pub join: bool,
}

impl Default for RangeOptions {
    fn default() -> RangeOptions {
        RangeOptions {
            leaf: 256,
            fanout: 16,
            join: true,
        }
    }
}

/// The most ranges one range is cut into at once: enough that a first
/// cut of 10M rows is into leaves (a second level costs a windowed query
/// and a fingerprint per range for most ranges, since at 0.1 % changed
/// most hold a difference); only the ranges that differ are kept.
const MAX_CUT: u64 = 65_536;

/// Keys one statement reads the rows of.
const KEYS_PER_QUERY: usize = 256;

/// Ranges whose fingerprints one statement computes (on PostgreSQL:
/// elsewhere a statement a range), so that a cut of tens of thousands
/// sends its list in parts of a megabyte or two.
const PRINTS_PER_QUERY: usize = 16_384;

/// Ranges small enough to compare row by row whose rows' hashes one
/// statement reads (on PostgreSQL: elsewhere a statement a range), so
/// that what is held at once stays about a hundred thousand hashes
/// (kept by both sides: hashes alone) or twenty thousand keys (a side
/// that hashes in the query reads each row's key with its hash).
const LEAVES_PER_QUERY: [usize; 2] = [512, 128];

/// What a range comparison asked of the databases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeStats {
    /// Queries run, both sides.
    pub queries: u64,
    /// Ranges whose fingerprints were compared.
    pub ranges: u64,
    /// Rows read out of the databases, both sides (the rows that differ,
    /// and the parents of the rows kept).
    pub rows_read: u64,
    /// Keys read with their rows' hashes, both sides (those of the ranges
    /// small enough to compare row by row).
    pub hashes_read: u64,
    /// Bytes of the values read out of the databases, both sides: the
    /// fingerprints (8 bytes a number), the keys that cut ranges, the keys
    /// and hashes of the leaves, the differing rows and their parents
    /// (text by its length, a number 8 bytes, a boolean 1).
    pub bytes_read: u64,
    /// Rows kept for the diff, both sides.
    pub rows_kept: u64,
    /// Rows the source's tables hold, all types.
    pub source_rows: u64,
    /// Rows the target's tables hold, all types.
    pub target_rows: u64,
    /// Tables compared by one join in their database (both sides in one
    /// PostgreSQL database), not by ranges.
    pub joined: u64,
    /// Tables, both sides, whose rows' hashes were read from the columns
    /// the database keeps them in
    /// ([`PostgresAdapter::keep_row_hashes`](crate::postgres::PostgresAdapter::keep_row_hashes)),
    /// not computed in each query.
    pub kept_hashes: u64,
}

/// The result of [`range_diff`]: the diff, and the images it was made
/// from (only the rows that differ, and their parents).
pub struct RangeDiff {
    /// What would change in the target to make it look like the source.
    pub diff: Diff,
    /// What the comparison cost.
    pub stats: RangeStats,
    /// The source's rows that were kept, as models.
    pub source: LocalStore,
    /// The target's rows that were kept, as models.
    pub target: LocalStore,
}

/// One side of a range diff: the tables of a registry's model types in a
/// database, read by range, never loaded whole; or a store already in
/// memory seen as the tables it would be ([`memory`](SqlTables::memory):
/// a file or an API's models against a large table, without loading the
/// table).
pub struct SqlTables {
    name: String,
    backend: Backend,
    tables: Vec<Table>,
    /// Per table, whether the database keeps its rows' hashes in columns
    /// (read, not computed, by the fingerprints).
    kept: Vec<bool>,
    registry: Registry,
}

/// Where a side's rows are.
enum Backend {
    /// In a database, asked with SQL.
    Sql {
        engine: Box<dyn Engine + Send>,
        dialect: &'static Dialect,
        /// Statements the comparison ran.
        asked: u64,
    },
    /// In memory: each table's rows in key order.
    Memory(Vec<MemTable>),
}

/// A table of a store in memory: its rows in key order with their hashes,
/// and the running sums that give any range's fingerprint at once.
struct MemTable {
    rows: Vec<(Vec<SqlValue>, [i64; 2])>,
    /// `sums[i]`: the sums of the hash halves of the first `i` rows.
    sums: Vec<[i64; 2]>,
    n_ids: usize,
}

#[cfg(feature = "sqlite")]
impl SqlTables {
    /// The tables of `registry`'s types in the SQLite database at `path`
    /// (as [`SqliteAdapter`](crate::sqlite::SqliteAdapter) keeps them).
    /// A table that is missing or lacks a column is an error naming it.
    pub fn sqlite(name: &str, path: impl AsRef<std::path::Path>, registry: Registry) -> Result<SqlTables> {
        let origin = path.as_ref().display().to_string();
        let conn = crate::sqlite::range_connection(path.as_ref(), &origin)?;
        SqlTables::new(
            name,
            &origin,
            Box::new(crate::sqlite::RangeConnection(conn)),
            &crate::sqlite::DIALECT,
            registry,
        )
    }
}

#[cfg(feature = "postgres")]
impl SqlTables {
    /// The tables of `registry`'s types in a PostgreSQL database (`params`
    /// as for [`PostgresAdapter::connect`](crate::postgres::PostgresAdapter::connect)).
    /// A table that is missing or lacks a column is an error naming it.
    pub fn postgres(name: &str, params: &str, registry: Registry) -> Result<SqlTables> {
        let (client, origin) = crate::postgres::range_client(params)?;
        SqlTables::new(name, &origin, Box::new(client), &crate::postgres::DIALECT, registry)
    }
}

impl SqlTables {
    fn new(
        name: &str,
        origin: &str,
        mut engine: Box<dyn Engine + Send>,
        dialect: &'static Dialect,
        registry: Registry,
    ) -> Result<SqlTables> {
        let tables = sql::tables(origin, &registry)?;
        let mut kept = Vec::with_capacity(tables.len());
        for t in &tables {
            t.check_columns(&engine.column_names(t)?)?;
            kept.push(engine.kept_hashes(t)?);
        }
        Ok(SqlTables {
            name: name.to_string(),
            backend: Backend::Sql {
                engine,
                dialect,
                asked: 0,
            },
            tables,
            kept,
            registry,
        })
    }

    /// A store in memory as one side: its models of `registry`'s types as
    /// the tables an SQL adapter would keep them in, hashed as the
    /// databases hash rows (so a store compares with a database by
    /// ranges, and only the database's differing rows are read).
    pub fn memory(name: &str, store: &LocalStore, registry: Registry) -> Result<SqlTables> {
        let tables = sql::tables(&format!("store {:?}", store.name()), &registry)?;
        let mut held = Vec::with_capacity(tables.len());
        for t in &tables {
            let mut rows = Vec::new();
            for m in store.get_all_dyn(&t.model_type) {
                let record = registry.to_value(m)?;
                let parent = store.parent(m.model_key())?;
                let row = t.row(&record, parent.as_ref().map(|p| p.unique_id()), &m.unique_id())?;
                let hash = sql::row_hash(&row[..t.columns.len()]);
                rows.push((row, halves(hash)));
            }
            rows.sort_by(|a, b| key_cmp(&a.0[..t.n_ids], &b.0[..t.n_ids]));
            let mut sums = Vec::with_capacity(rows.len() + 1);
            let mut sum = [0i64; 2];
            sums.push(sum);
            for (_, [hi, lo]) in &rows {
                sum = [sum[0] + hi, sum[1] + lo];
                sums.push(sum);
            }
            held.push(MemTable {
                rows,
                sums,
                n_ids: t.n_ids,
            });
        }
        Ok(SqlTables {
            name: name.to_string(),
            backend: Backend::Memory(held),
            kept: vec![false; tables.len()],
            tables,
            registry,
        })
    }

    /// The fingerprints of the ranges `bounds` cut `range` into
    /// (`bounds.len() + 1` of them, empty ones included), each read
    /// through the key's index: a query each, or on PostgreSQL one query
    /// for all the ranges bounded on both sides (the bounds sent as one
    /// JSON list the database joins its index reads to).
    fn prints(&mut self, ti: usize, range: &Range, bounds: &[Vec<SqlValue>]) -> Result<Vec<Print>> {
        let t = &self.tables[ti];
        let kept = self.kept[ti];
        let (engine, d, asked) = match &mut self.backend {
            Backend::Sql { engine, dialect, asked } => (engine, *dialect, asked),
            Backend::Memory(m) => return Ok(range.cut(bounds).map(|p| m[ti].print(&p)).collect()),
        };
        let parts: Vec<Range> = range.cut(bounds).collect();
        let mut prints = vec![Print::default(); parts.len()];
        let mut listed = vec![false; parts.len()];
        for (at, chunk) in (0..).step_by(PRINTS_PER_QUERY).zip(parts.chunks(PRINTS_PER_QUERY)) {
            let Some(list) = listed_ranges(d, t, chunk, None) else {
                continue;
            };
            let sql = format!(
                "SELECT b.i, s.* FROM {} CROSS JOIN LATERAL ({}) AS s",
                list.from,
                print_sql(t, d, kept, &list.condition)
            );
            let Some(rows) = ask_list(engine, asked, &t.origin(), &sql, &list, &[ValueKind::Integer; 4]) else {
                break;
            };
            for row in rows {
                let [i, count, hi, lo] = ints(&row)?;
                prints[at + listed_place(i, chunk.len())?] = Print { count, hi, lo };
            }
            listed[at..at + chunk.len()].copy_from_slice(&list.listed);
        }
        for (part, print) in parts
            .iter()
            .zip(&mut prints)
            .zip(listed)
            .filter(|(_, l)| !l)
            .map(|(p, _)| p)
        {
            let mut params = Vec::new();
            let sql = print_sql(t, d, kept, &part.filter(t, d, &mut params));
            *asked += 1;
            engine.query(&t.origin(), &sql, &params, &[ValueKind::Integer; 3], &mut |row| {
                let [count, hi, lo] = ints(&row)?;
                *print = Print { count, hi, lo };
                Ok(())
            })?;
        }
        Ok(prints)
    }

    /// The whole table's fingerprint, and `true`; or, where that costs
    /// as much as the fingerprints of the ranges a cut makes (PostgreSQL
    /// hashing each row in the query: a pass over the table either way),
    /// only its row count, and `false`: the table is then cut without
    /// being compared whole, so a table that differs costs one hashing
    /// pass, not two (an equal one costs one either way, now with a
    /// sample and a count beside it).
    fn whole(&mut self, ti: usize) -> Result<(Print, bool)> {
        let whole = Range { lo: None, hi: None };
        let t = &self.tables[ti];
        match &mut self.backend {
            Backend::Sql { engine, dialect, asked } if is_postgres(dialect) && !self.kept[ti] => {
                let mut print = Print::default();
                *asked += 1;
                let sql = format!("SELECT count(*) FROM {}", t.name);
                engine.query(&t.origin(), &sql, &[], &[ValueKind::Integer], &mut |row| {
                    print.count = ints::<1>(&row)?[0];
                    Ok(())
                })?;
                Ok((print, false))
            }
            _ => Ok((self.prints(ti, &whole, &[])?[0], true)),
        }
    }

    /// Keys that cut `range` (holding `count` rows here) into `parts`
    /// ranges of about equal size, in key order.
    fn bounds(&mut self, ti: usize, range: &Range, count: u64, parts: usize) -> Result<Vec<Vec<SqlValue>>> {
        let t = &self.tables[ti];
        let (engine, d, asked) = match &mut self.backend {
            Backend::Sql { engine, dialect, asked } => (engine, *dialect, asked),
            Backend::Memory(m) => return Ok(m[ti].bounds(range, count, parts)),
        };
        let ids = id_columns(t);
        let kinds = id_kinds(t);
        let mut bounds = Vec::new();
        if is_postgres(d) && range.lo.is_none() && range.hi.is_none() {
            // A whole table: the keys of rows at evenly spread places of
            // its pages (two for each range wanted, sorted, every other
            // kept), rather than numbering every row.
            let sql = format!(
                "SELECT {ids} FROM (SELECT {ids}, row_number() OVER (ORDER BY {order}) AS rn, count(*) OVER () AS m \
                 FROM {name} WHERE ctid = ANY (ARRAY(SELECT format('(%s,%s)', p / $2::bigint, 1 + p % $2::bigint)::tid \
                 FROM (SELECT g * ($1::bigint * $2::bigint) / $3::bigint AS p \
                 FROM generate_series(0, $3::bigint - 1) AS g) AS q))) AS s \
                 WHERE rn % greatest(m / $4::bigint, 1) = 0 ORDER BY rn",
                name = t.name,
                order = t.key_order(d),
            );
            let mut sample = || -> Result<()> {
                let mut blocks = 0;
                let size = "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint";
                *asked += 1;
                let name = [SqlValue::Text(t.name.clone())];
                engine.query(&t.origin(), size, &name, &[ValueKind::Integer], &mut |row| {
                    blocks = ints::<1>(&row)?[0];
                    Ok(())
                })?;
                // Rows a page holds, at most the line pointers one can have.
                let per_block = count.div_ceil(blocks.max(1) as u64).clamp(1, 291) as i64;
                let samples = (2 * parts as i64).min(blocks * per_block);
                let params = [blocks, per_block, samples, parts as i64].map(SqlValue::Int);
                *asked += 1;
                engine.query(&t.origin(), &sql, &params, &kinds, &mut |row| {
                    bounds.push(row);
                    Ok(())
                })
            };
            match sample() {
                // Too few rows where they were looked for (pages of dead
                // rows): every row numbered instead.
                Ok(()) if bounds.len() >= parts / 2 => return Ok(bounds),
                Ok(()) => {}
                // An engine that speaks PostgreSQL's protocol without its
                // pages (a distributed one), or a role that may not ask
                // their size: every row numbered.
                Err(e) => tracing::debug!(error = %e, "no sample of the pages: numbering the rows"),
            }
            bounds.clear();
        }
        let mut params = Vec::new();
        let filter = range.filter(t, d, &mut params);
        let step = count.div_ceil(parts as u64).max(1);
        let sql = format!(
            "SELECT {ids} FROM (SELECT {ids}, row_number() OVER (ORDER BY {order}) AS rn FROM {} WHERE {filter}) AS s \
             WHERE (rn - 1) % {step} = 0 AND rn > 1 ORDER BY rn",
            t.name,
            order = t.key_order(d),
        );
        *asked += 1;
        engine.query(&t.origin(), &sql, &params, &kinds, &mut |row| {
            bounds.push(row);
            Ok(())
        })?;
        Ok(bounds)
    }

    /// The hashes of the rows of `ranges`, each with the range it is in
    /// (an index-only read where the database keeps the hashes), and
    /// where the rows are hashed in the query, with its key (so that a
    /// differing row is then read by key, not by hashing its range
    /// again): a query a range, or on PostgreSQL one for all of them.
    fn hashes(&mut self, ti: usize, ranges: &[Range]) -> Result<Vec<Hashed>> {
        let t = &self.tables[ti];
        let kept = self.kept[ti];
        let (engine, d, asked) = match &mut self.backend {
            Backend::Sql { engine, dialect, asked } => (engine, *dialect, asked),
            Backend::Memory(m) => {
                return Ok(ranges
                    .iter()
                    .enumerate()
                    .flat_map(|(i, range)| {
                        let (from, to) = m[ti].positions(range);
                        m[ti].rows[from..to].iter().map(move |(_, h)| (i, *h, None))
                    })
                    .collect());
            }
        };
        let mut kinds = if kept { Vec::new() } else { id_kinds(t) };
        kinds.extend([ValueKind::Integer; 2]);
        let mut out = Vec::new();
        let parse = |i: usize, mut row: Vec<SqlValue>| -> Result<Hashed> {
            let hash = ints::<2>(&row[row.len() - 2..])?;
            row.truncate(row.len() - 2);
            Ok((i, hash, (!kept).then_some(row)))
        };
        let listed = match listed_ranges(d, t, ranges, None) {
            Some(list) => {
                let sql = format!(
                    "SELECT b.i, s.* FROM {} CROSS JOIN LATERAL ({}) AS s",
                    list.from,
                    hash_sql(t, d, kept, &list.condition)
                );
                let mut listed_kinds = vec![ValueKind::Integer];
                listed_kinds.extend(&kinds);
                match ask_list(engine, asked, &t.origin(), &sql, &list, &listed_kinds) {
                    Some(rows) => {
                        for mut row in rows {
                            let i = listed_place(ints::<1>(&row)?[0], ranges.len())?;
                            row.remove(0);
                            out.push(parse(i, row)?);
                        }
                        list.listed
                    }
                    None => vec![false; ranges.len()],
                }
            }
            None => vec![false; ranges.len()],
        };
        for (i, range) in ranges.iter().enumerate().filter(|(i, _)| !listed[*i]) {
            let mut params = Vec::new();
            let sql = hash_sql(t, d, kept, &range.filter(t, d, &mut params));
            *asked += 1;
            engine.query(&t.origin(), &sql, &params, &kinds, &mut |row| {
                out.push(parse(i, row)?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The rows of `wanted`: by key those read with their key, the others
    /// by the range of `ranges` they are in and their hash.
    fn rows_of(&mut self, ti: usize, ranges: &[Range], wanted: Vec<Hashed>) -> Result<Rows> {
        let (keyed, hashed): (Vec<Hashed>, Vec<Hashed>) = wanted.into_iter().partition(|(_, _, k)| k.is_some());
        let hashed: Vec<(usize, [i64; 2])> = hashed.into_iter().map(|(i, h, _)| (i, h)).collect();
        let mut rows = self.rows_by_hash(ti, ranges, &hashed)?;
        let keys: Vec<Vec<SqlValue>> = keyed.into_iter().filter_map(|(_, _, k)| k).collect();
        rows.extend(self.rows_by_key(ti, &keys)?);
        Ok(rows)
    }

    /// The rows with these keys (in any order).
    fn rows_by_key(&mut self, ti: usize, keys: &[Vec<SqlValue>]) -> Result<Rows> {
        let t = &self.tables[ti];
        let (engine, d, asked) = match &mut self.backend {
            Backend::Sql { engine, dialect, asked } => (engine, *dialect, asked),
            Backend::Memory(m) => {
                let rows = &m[ti].rows;
                return Ok(keys
                    .iter()
                    .filter_map(|k| {
                        let at = rows.partition_point(|(r, _)| key_cmp(&r[..t.n_ids], k).is_lt());
                        rows.get(at).filter(|(r, _)| key_cmp(&r[..t.n_ids], k).is_eq())
                    })
                    .map(|(r, _)| r.clone())
                    .collect());
            }
        };
        let cols: Vec<String> = t.column_names().iter().map(|c| quote(c)).collect();
        let kinds = row_kinds(t);
        let mut out = Vec::with_capacity(keys.len());
        let ids = id_names(t);
        for group in keys.chunks(KEYS_PER_QUERY) {
            // Each key an equality per column (so a parameter takes its
            // column's type: PostgreSQL reads a `VALUES` list's as text).
            let mut params = Vec::new();
            let each: Vec<String> = group
                .iter()
                .map(|k| {
                    let terms: Vec<String> = ids
                        .iter()
                        .zip(k)
                        .map(|(c, v)| {
                            params.push(v.clone());
                            format!("{c} = {}", (d.placeholder)(params.len()))
                        })
                        .collect();
                    format!("({})", terms.join(" AND "))
                })
                .collect();
            let sql = format!("SELECT {} FROM {} WHERE {}", cols.join(", "), t.name, each.join(" OR "));
            *asked += 1;
            engine.query(&t.origin(), &sql, &params, &kinds, &mut |row| {
                out.push(row);
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// The rows `wanted` names, each by the range of `ranges` it is in and
    /// its hash: each found through the key's index within its range.
    fn rows_by_hash(&mut self, ti: usize, ranges: &[Range], wanted: &[(usize, [i64; 2])]) -> Result<Rows> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let t = &self.tables[ti];
        let kept = self.kept[ti];
        let (engine, d, asked) = match &mut self.backend {
            Backend::Sql { engine, dialect, asked } => (engine, *dialect, asked),
            Backend::Memory(m) => {
                return Ok(wanted
                    .iter()
                    .flat_map(|(i, hash)| {
                        let (from, to) = m[ti].positions(&ranges[*i]);
                        m[ti].rows[from..to]
                            .iter()
                            .filter(move |(_, h)| h == hash)
                            .map(|(r, _)| r.clone())
                    })
                    .collect());
            }
        };
        let kinds = row_kinds(t);
        let mut out = Vec::with_capacity(wanted.len());
        let each: Vec<Range> = wanted.iter().map(|(i, _)| ranges[*i].borrowed()).collect();
        let hashes: Vec<[i64; 2]> = wanted.iter().map(|(_, h)| *h).collect();
        let listed = match listed_ranges(d, t, &each, Some(&hashes)) {
            Some(list) => {
                let sql = format!(
                    "SELECT s.* FROM {} CROSS JOIN LATERAL ({}) AS s",
                    list.from,
                    row_sql(t, d, kept, &list.condition, ["b.x", "b.y"])
                );
                match ask_list(engine, asked, &t.origin(), &sql, &list, &kinds) {
                    Some(rows) => {
                        out.extend(rows);
                        list.listed
                    }
                    None => vec![false; each.len()],
                }
            }
            None => vec![false; each.len()],
        };
        for ((range, hash), _) in each.iter().zip(&hashes).zip(listed).filter(|(_, l)| !l) {
            let mut params = Vec::new();
            let filter = range.filter(t, d, &mut params);
            params.extend(hash.map(SqlValue::Int));
            let at = [params.len() - 1, params.len()].map(d.placeholder);
            let sql = row_sql(t, d, kept, &filter, [&at[0], &at[1]]);
            *asked += 1;
            engine.query(&t.origin(), &sql, &params, &kinds, &mut |row| {
                out.push(row);
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// A range's row count and the sums of its rows' hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Print {
    count: i64,
    hi: i64,
    lo: i64,
}

/// A key range: from `lo` (inclusive) to `hi` (exclusive), each unbounded
/// when `None`; its keys borrowed while it is a part being compared, owned
/// once kept for later.
#[derive(Clone, Debug)]
struct Range<'k> {
    lo: Option<Cow<'k, [SqlValue]>>,
    hi: Option<Cow<'k, [SqlValue]>>,
}

impl<'k> Range<'k> {
    /// The ranges `bounds` (keys within this range, in order) cut it into,
    /// borrowing their keys.
    fn cut<'a>(&'a self, bounds: &'a [Vec<SqlValue>]) -> impl Iterator<Item = Range<'a>> + 'a {
        let edge = |key: &'a Option<Cow<'k, [SqlValue]>>| key.as_deref().map(Cow::Borrowed);
        (0..=bounds.len()).map(move |i| Range {
            lo: if i == 0 {
                edge(&self.lo)
            } else {
                Some(Cow::Borrowed(&bounds[i - 1][..]))
            },
            hi: if i == bounds.len() {
                edge(&self.hi)
            } else {
                Some(Cow::Borrowed(&bounds[i][..]))
            },
        })
    }

    /// The range, its keys borrowed.
    fn borrowed(&self) -> Range<'_> {
        Range {
            lo: self.lo.as_deref().map(Cow::Borrowed),
            hi: self.hi.as_deref().map(Cow::Borrowed),
        }
    }

    /// The range with keys of its own.
    fn owned(self) -> Range<'static> {
        Range {
            lo: self.lo.map(|k| Cow::Owned(k.into_owned())),
            hi: self.hi.map(|k| Cow::Owned(k.into_owned())),
        }
    }

    /// The `WHERE` condition of the range, its parameters pushed.
    fn filter(&self, t: &Table, d: &Dialect, params: &mut Vec<SqlValue>) -> String {
        let mut values = |key: &Option<Cow<'_, [SqlValue]>>| {
            key.as_deref().map(|k| {
                k.iter()
                    .map(|v| {
                        params.push(v.clone());
                        (d.placeholder)(params.len())
                    })
                    .collect::<Vec<_>>()
            })
        };
        let (lo, hi) = (values(&self.lo), values(&self.hi));
        condition(t, d, lo.as_deref(), hi.as_deref())
    }
}

/// The rows `sql`, the statement of `list`, answers (read by `kinds`);
/// or `None` where the engine refused it (one that speaks PostgreSQL's
/// protocol without `json_to_recordset` or `LATERAL`, say): each range is
/// then asked on its own (where the server is gone, that fails too, with
/// its own error). What the rows say is checked by the caller, whose
/// errors are errors, not refusals.
fn ask_list(
    engine: &mut Box<dyn Engine + Send>,
    asked: &mut u64,
    origin: &str,
    sql: &str,
    list: &Listed,
    kinds: &[ValueKind],
) -> Option<Vec<Vec<SqlValue>>> {
    let mut rows = Vec::new();
    *asked += 1;
    let answered = engine.query(origin, sql, std::slice::from_ref(&list.json), kinds, &mut |row| {
        rows.push(row);
        Ok(())
    });
    match answered {
        Ok(()) => Some(rows),
        Err(e) => {
            tracing::debug!(error = %e, "a list of ranges refused: a statement a range");
            None
        }
    }
}

/// The place in a list of `len` ranges that a row of its statement names
/// (`i`, as read back from the database: a place it was not given is an
/// error, not a panic).
fn listed_place(i: i64, len: usize) -> Result<usize> {
    usize::try_from(i).ok().filter(|i| *i < len).ok_or_else(|| {
        AdapterError::backend(
            "range diff",
            format!("a statement listing {len} ranges answered for range {i}"),
        )
    })
}

/// The `WHERE` condition of a key range from `lo` (inclusive) to `hi`
/// (exclusive), each an expression per identifier column (a parameter, a
/// column of a list of ranges) or unbounded. With a key of several
/// columns, the first column's bounds are said too (implied by the row
/// comparison): a planner estimates a range by them, where a row
/// comparison alone reads as a large share of the table (for a list of
/// ranges whose rows are hashed in the query, a scan of the whole table
/// per range).
fn condition(t: &Table, d: &Dialect, lo: Option<&[String]>, hi: Option<&[String]>) -> String {
    let mut parts = Vec::new();
    let first = t.key_column(d, 0);
    let several = t.n_ids > 1;
    for (bound, whole, edge) in [(lo, ">=", ">="), (hi, "<", "<=")] {
        if let Some(values) = bound {
            parts.push(format!("{} {whole} ({})", key_tuple(t, d), values.join(", ")));
            if several {
                parts.push(format!("{first} {edge} {}", values[0]));
            }
        }
    }
    if parts.is_empty() {
        "1 = 1".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// The `SELECT` of a range's fingerprint (row count, sums of the hash
/// halves) for the rows `filter` takes.
fn print_sql(t: &Table, d: &Dialect, kept: bool, filter: &str) -> String {
    if kept {
        // The hashes the database keeps: an index-only read.
        format!(
            "SELECT count(*), {}, {} FROM {} WHERE {filter}",
            (d.sum)(&quote(sql::HASH_COLUMNS[0])),
            (d.sum)(&quote(sql::HASH_COLUMNS[1])),
            t.name,
        )
    } else {
        let [hi, lo] = (d.halves)("h");
        format!(
            "SELECT count(*), {}, {} FROM (SELECT {} AS h FROM {} WHERE {filter}{}) AS s",
            (d.sum)(&hi),
            (d.sum)(&lo),
            (d.row_hash)(&hashed_columns(t)),
            t.name,
            d.fence,
        )
    }
}

/// The `SELECT` of the hash halves of the rows `filter` takes (after
/// their keys, where the rows are hashed in the query).
fn hash_sql(t: &Table, d: &Dialect, kept: bool, filter: &str) -> String {
    if kept {
        let [hi, lo] = sql::HASH_COLUMNS.map(quote);
        format!("SELECT {hi}, {lo} FROM {} WHERE {filter}", t.name)
    } else {
        let [hi, lo] = (d.halves)("h");
        let ids = id_columns(t);
        format!(
            "SELECT {ids}, {hi}, {lo} FROM (SELECT {ids}, {} AS h FROM {} WHERE {filter}{}) AS s",
            (d.row_hash)(&hashed_columns(t)),
            t.name,
            d.fence,
        )
    }
}

/// The `SELECT` of the rows `filter` takes whose hash halves are `hash`
/// (two expressions). The range is read in a subquery of its own, fenced:
/// a planner that saw the hashes' equality would join a list of ranges
/// to the whole table by hash, reading all of it. Where the database
/// keeps the hashes, the range's keys and hashes are read from the index
/// and only the row found is read from the table.
fn row_sql(t: &Table, d: &Dialect, kept: bool, filter: &str, [x, y]: [&str; 2]) -> String {
    let names = t.column_names();
    let cols = |alias: &str| {
        names
            .iter()
            .map(|c| format!("{alias}{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if kept {
        let [hi, lo] = sql::HASH_COLUMNS.map(quote);
        let on = id_names(t)
            .iter()
            .map(|c| format!("r.{c} = k.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "SELECT {} FROM (SELECT {} FROM {name} WHERE {filter} AND {hi} = {x} AND {lo} = {y}{}) AS k \
             JOIN {name} AS r ON {on}",
            cols("r."),
            id_columns(t),
            d.fence,
            name = t.name,
        )
    } else {
        let [hi, lo] = (d.halves)(&(d.row_hash)(&hashed_columns(t)));
        format!(
            "SELECT {cols} FROM (SELECT {cols}, {hi} AS hash_hi, {lo} AS hash_lo FROM {} WHERE {filter}{}) AS s \
             WHERE hash_hi = {x} AND hash_lo = {y}",
            t.name,
            d.fence,
            cols = cols(""),
        )
    }
}

/// Ranges bounded on both sides, as one parameter PostgreSQL reads as a
/// list of rows: the JSON (`{"i": n, "l0": .., "h0": .., ...}` each, and
/// a hash's halves as `x` and `y` when asked), the `FROM` item that reads
/// it (`b`), the condition a range's rows meet with `b`'s bounds, and
/// which ranges it lists.
struct Listed {
    json: SqlValue,
    from: String,
    condition: String,
    listed: Vec<bool>,
}

/// The ranges of `ranges` bounded on both sides as a [`Listed`] (each
/// with the hash of `hashes` at its place, if given), on PostgreSQL and
/// when at least two are (`None` otherwise: a query each).
fn listed_ranges(d: &Dialect, t: &Table, ranges: &[Range], hashes: Option<&[[i64; 2]]>) -> Option<Listed> {
    if !is_postgres(d) {
        return None;
    }
    // Written as it goes (a first cut lists tens of thousands of ranges);
    // writing to a `Vec` cannot fail.
    let mut json = b"[".to_vec();
    let mut count = 0;
    let mut listed = vec![false; ranges.len()];
    for (i, (range, listed)) in ranges.iter().zip(&mut listed).enumerate() {
        let (Some(lo), Some(hi)) = (&range.lo, &range.hi) else {
            continue;
        };
        // A number JSON cannot say (NaN, infinite): a query a range.
        if lo
            .iter()
            .chain(hi.iter())
            .any(|v| matches!(v, SqlValue::Real(f) if !f.is_finite()))
        {
            return None;
        }
        let _ = write!(json, "{}{{\"i\":{i}", if count > 0 { "," } else { "" });
        for (side, key) in [("l", lo), ("h", hi)] {
            for (c, v) in key.iter().enumerate() {
                let _ = write!(json, ",\"{side}{c}\":");
                let _ = match v {
                    SqlValue::Null => write!(json, "null"),
                    SqlValue::Int(n) => write!(json, "{n}"),
                    SqlValue::Real(f) => write!(json, "{f:?}"),
                    SqlValue::Bool(b) => write!(json, "{b}"),
                    SqlValue::Text(s) => serde_json::to_writer(&mut json, s).map_err(std::io::Error::from),
                };
            }
        }
        if let Some([x, y]) = hashes.map(|h| h[i]) {
            let _ = write!(json, ",\"x\":{x},\"y\":{y}");
        }
        json.push(b'}');
        count += 1;
        *listed = true;
    }
    json.push(b']');
    if count < 2 {
        return None;
    }
    let mut columns = vec!["i BIGINT".to_string()];
    let mut bound = |side: &str| -> Vec<String> {
        t.columns[..t.n_ids]
            .iter()
            .enumerate()
            .map(|(c, col)| {
                columns.push(format!("{side}{c} {}", (d.column_type)(col.kind)));
                format!("b.{side}{c}")
            })
            .collect()
    };
    let (lo, hi) = (bound("l"), bound("h"));
    if hashes.is_some() {
        columns.extend(["x BIGINT".to_string(), "y BIGINT".to_string()]);
    }
    Some(Listed {
        json: SqlValue::Text(String::from_utf8(json).ok()?),
        from: format!(
            "json_to_recordset({}::text::json) AS b({})",
            (d.placeholder)(1),
            columns.join(", ")
        ),
        condition: condition(t, d, Some(&lo), Some(&hi)),
        listed,
    })
}

/// The identifier columns as a row value, text compared bytewise.
fn key_tuple(t: &Table, d: &Dialect) -> String {
    format!("({})", t.key_order(d))
}

/// The identifier columns, quoted.
fn id_names(t: &Table) -> Vec<String> {
    t.columns[..t.n_ids].iter().map(|c| quote(&c.name)).collect()
}

fn id_columns(t: &Table) -> String {
    id_names(t).join(", ")
}

/// The kinds of the identifier columns.
fn id_kinds(t: &Table) -> Vec<ValueKind> {
    t.columns[..t.n_ids].iter().map(|c| c.kind).collect()
}

/// The columns a row's hash covers: its identifiers and attributes.
fn hashed_columns(t: &Table) -> Vec<(String, ValueKind)> {
    t.columns.iter().map(|c| (quote(&c.name), c.kind)).collect()
}

/// The kinds of a table's columns as [`Table::column_names`] lists them.
fn row_kinds(t: &Table) -> Vec<ValueKind> {
    let mut kinds: Vec<ValueKind> = t.columns.iter().map(|c| c.kind).collect();
    if t.has_parent {
        kinds.push(ValueKind::String);
    }
    kinds
}

/// The bytes of values read (text by its length, a number 8, a boolean 1).
fn bytes_of(values: &[SqlValue]) -> u64 {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Null => 0,
            SqlValue::Int(_) | SqlValue::Real(_) => 8,
            SqlValue::Bool(_) => 1,
            SqlValue::Text(t) => t.len() as u64,
        })
        .sum()
}

/// [`bytes_of`] for a value read into a record.
fn json_bytes(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Null => 0,
        serde_json::Value::Bool(_) => 1,
        serde_json::Value::Number(_) => 8,
        serde_json::Value::String(s) => s.len() as u64,
        other => other.to_string().len() as u64,
    }
}

fn ints<const N: usize>(row: &[SqlValue]) -> Result<[i64; N]> {
    let mut out = [0; N];
    for (o, v) in out.iter_mut().zip(row) {
        *o = match v {
            SqlValue::Int(i) => *i,
            SqlValue::Null => 0,
            other => {
                return Err(AdapterError::backend(
                    "range fingerprint",
                    format!("an aggregate read back as {other:?}"),
                ));
            }
        };
    }
    Ok(out)
}

/// What the target would have to change to look like the source, found by
/// comparing range fingerprints inside both databases: see the
/// [module](self). Both sides must hold the same registry's types.
///
/// ```
/// use diffsync::{AdapterExt, DiffModel, MemoryAdapter};
/// use diffsync_adapters::Registry;
/// use diffsync_adapters::ranges::{RangeOptions, SqlTables, range_diff};
/// use diffsync_adapters::sqlite::SqliteAdapter;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DiffModel, Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[diffsync(name = "site")]
/// struct Site { #[diffsync(id)] name: String, region: String }
///
/// let registry = || Registry::new().with::<Site>();
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
/// let mut sites = MemoryAdapter::new("sites", &["site"]);
/// for i in 0..1000 {
///     sites.store.add(Site { name: format!("s{i:04}"), region: "east".into() }).unwrap();
/// }
/// SqliteAdapter::open("copy", &b, registry()).unwrap().sync_from(&sites).unwrap();
/// sites.store.update(Site { name: "s0500".into(), region: "west".into() }).unwrap();
/// SqliteAdapter::open("cmdb", &a, registry()).unwrap().sync_from(&sites).unwrap();
///
/// let mut source = SqlTables::sqlite("cmdb", &a, registry()).unwrap();
/// let mut target = SqlTables::sqlite("copy", &b, registry()).unwrap();
/// let found = range_diff(&mut source, &mut target, &RangeOptions::default()).unwrap();
/// assert_eq!(found.diff.summary().update, 1);
/// // Two ranges of at most 256 rows read, not 2,000 rows.
/// assert!(found.stats.rows_read <= 512, "{:?}", found.stats);
/// ```
pub fn range_diff(source: &mut SqlTables, target: &mut SqlTables, opts: &RangeOptions) -> Result<RangeDiff> {
    range_diff_with(source, target, opts, &mut |_| {})
}

/// [`range_diff`], telling `progress` what it has done so far after each
/// range it compared, cut or read (a command line draws it).
pub fn range_diff_with(
    source: &mut SqlTables,
    target: &mut SqlTables,
    opts: &RangeOptions,
    progress: &mut dyn FnMut(&RangeStats),
) -> Result<RangeDiff> {
    let mut stats = RangeStats::default();
    check_same_tables(source, target)?;
    let kept = match opts.join.then(|| same_database(source, target)).transpose()? {
        Some(Some(schemas)) => match joined(source, &schemas, &mut stats, progress) {
            Ok(kept) => kept,
            // The source's role may not read the target's schema: each
            // side's tables by ranges on its own connection, as for two
            // databases.
            Err(e) => {
                tracing::info!(error = %e, "the join across schemas failed: comparing by ranges");
                stats = RangeStats::default();
                all_by_ranges(source, target, opts, &mut stats, progress)?
            }
        },
        _ => all_by_ranges(source, target, opts, &mut stats, progress)?,
    };
    finish(source, target, kept, &mut stats)
}

/// [`by_ranges`], every table's kept rows held.
fn all_by_ranges(
    source: &mut SqlTables,
    target: &mut SqlTables,
    opts: &RangeOptions,
    stats: &mut RangeStats,
    progress: &mut dyn FnMut(&RangeStats),
) -> Result<Vec<(Rows, Rows)>> {
    let mut kept: Vec<(Rows, Rows)> = vec![(Vec::new(), Vec::new()); source.tables.len()];
    by_ranges(source, target, opts, stats, progress, &mut |_, _, ti, (rs, rt), _| {
        kept[ti].0.extend(rs);
        kept[ti].1.extend(rt);
        Ok(())
    })?;
    Ok(kept)
}

/// [`range_diff_with`] in parts, for many differences in bounded memory:
/// each time the rows kept since the last part hold `budget` bytes or
/// more (text by its length, a number 8 bytes), and at the end, their
/// diff (with their parents, read from both sides) goes to `part` and is
/// dropped before the comparison goes on. A part holds at most `budget`
/// bytes of rows plus those of one batch of leaves (up to 512 leaves of
/// `leaf` rows a side) and their parents. Tables are compared by ranges
/// even in one PostgreSQL database (a join's rows would come at once).
/// Returns what the whole comparison cost.
///
/// `part` may sync each part as it comes (open the target on the part's
/// image and apply its diff, as for [`range_diff`]): a part's rows lie
/// in ranges already compared, so what is left to compare is not
/// touched. A parent deleted by one part may leave children that a later
/// part holds: there they are rows without a parent in the target, which
/// that part's diff deletes.
pub fn range_diff_parts(
    source: &mut SqlTables,
    target: &mut SqlTables,
    opts: &RangeOptions,
    budget: u64,
    progress: &mut dyn FnMut(&RangeStats),
    part: &mut dyn FnMut(RangeDiff) -> Result<()>,
) -> Result<RangeStats> {
    let mut stats = RangeStats::default();
    check_same_tables(source, target)?;
    let tables = source.tables.len();
    let mut held: Vec<(Rows, Rows)> = vec![(Vec::new(), Vec::new()); tables];
    let mut bytes = 0;
    by_ranges(
        source,
        target,
        opts,
        &mut stats,
        progress,
        &mut |source, target, ti, (rs, rt), stats| {
            bytes += rs.iter().chain(&rt).map(|r| bytes_of(r)).sum::<u64>();
            held[ti].0.extend(rs);
            held[ti].1.extend(rt);
            if bytes >= budget {
                bytes = 0;
                let rows = std::mem::replace(&mut held, vec![(Vec::new(), Vec::new()); tables]);
                part(finish(source, target, rows, stats)?)?;
            }
            Ok(())
        },
    )?;
    if held.iter().any(|(s, t)| !s.is_empty() || !t.is_empty()) {
        part(finish(source, target, held, &mut stats)?)?;
    }
    Ok(stats)
}

/// The diff of the rows kept of each table (per model type, each side's),
/// with their parents read from both sides, and the images it was made
/// from.
fn finish(
    source: &mut SqlTables,
    target: &mut SqlTables,
    kept: Vec<(Rows, Rows)>,
    stats: &mut RangeStats,
) -> Result<RangeDiff> {
    let (kept_source, kept_target): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
    let mut records = (source.records(kept_source)?, target.records(kept_target)?);
    with_parents(source, target, &mut records, stats)?;
    let source_image = source.image(records.0)?;
    let target_image = target.image(records.1)?;
    let top: Vec<&str> = source.registry.top_level();
    let from = MemoryAdapter::with_store(source.name.clone(), &top, source_image);
    let into = MemoryAdapter::with_store(target.name.clone(), &top, target_image);
    let diff = into
        .diff_from(&from)
        .map_err(|e| AdapterError::backend("range diff", e))?;
    Ok(RangeDiff {
        diff,
        stats: *stats,
        source: from.store,
        target: into.store,
    })
}

/// The rows of each table that differ between the sides (per model type,
/// each side's), found by comparing range fingerprints and reading the
/// ranges that differ at the leaves.
fn by_ranges(
    source: &mut SqlTables,
    target: &mut SqlTables,
    opts: &RangeOptions,
    stats: &mut RangeStats,
    progress: &mut dyn FnMut(&RangeStats),
    sink: &mut Sink<'_>,
) -> Result<()> {
    let leaf = opts.leaf.max(1) as i64;
    let fanout = opts.fanout.max(2);
    // Statements are counted by each side as it runs them.
    let (start, base) = (stats.queries, source.asked() + target.asked());
    let asked = |source: &SqlTables, target: &SqlTables| start + source.asked() + target.asked() - base;
    for ti in 0..source.tables.len() {
        stats.kept_hashes += u64::from(source.kept[ti]) + u64::from(target.kept[ti]);
        let whole: Range<'static> = Range { lo: None, hi: None };
        let ((ps, ks), (pt, kt)) = both(source, target, |side| side.whole(ti))?;
        // Whether the tables' fingerprints were compared, or only counted.
        let known = ks && kt;
        stats.bytes_read += if ks { 24 } else { 8 } + if kt { 24 } else { 8 };
        stats.ranges += 1;
        stats.source_rows += ps.count as u64;
        stats.target_rows += pt.count as u64;
        let mut work = vec![(whole, ps, pt, known)];
        let mut leaves: Vec<Range<'static>> = Vec::new();
        let batch = LEAVES_PER_QUERY[usize::from(!(source.kept[ti] && target.kept[ti]))];
        loop {
            stats.queries = asked(source, target);
            progress(stats);
            let next = work.pop();
            if next.is_none() || leaves.len() >= batch {
                let (rs, rt) = compare_leaves(source, target, ti, &leaves, stats)?;
                leaves.clear();
                if !rs.is_empty() || !rt.is_empty() {
                    stats.rows_kept += (rs.len() + rt.len()) as u64;
                    sink(source, target, ti, (rs, rt), stats)?;
                }
            }
            let Some((range, ps, pt, known)) = next else {
                break;
            };
            if known && ps == pt {
                continue;
            }
            if ps.count.max(pt.count) <= leaf {
                leaves.push(range);
                continue;
            }
            // Cut at the keys of the side that holds more of the range,
            // into ranges of about half a leaf (so that a range stays
            // under a leaf on the other side too, and is read next), at
            // most MAX_CUT of them, at least `fanout`.
            let n = ps.count.max(pt.count) as u64;
            let parts = n.div_ceil((leaf as u64 / 2).max(1)).clamp(fanout as u64, MAX_CUT) as usize;
            let bounds = if ps.count >= pt.count {
                source.bounds(ti, &range, n, parts)?
            } else {
                target.bounds(ti, &range, n, parts)?
            };
            stats.bytes_read += bounds.iter().map(|b| bytes_of(b)).sum::<u64>();
            let (bs, bt) = both(source, target, |side| side.prints(ti, &range, &bounds))?;
            stats.ranges += bs.len() as u64;
            stats.bytes_read += 2 * 24 * bs.len() as u64;
            // Only the ranges that differ are kept for later (a first cut
            // holds tens of thousands).
            for (part, (ps, pt)) in range.cut(&bounds).zip(bs.into_iter().zip(bt)) {
                if ps != pt {
                    work.push((part.owned(), ps, pt, true));
                }
            }
        }
    }
    stats.queries = asked(source, target);
    Ok(())
}

/// Compares `leaves` (ranges of at most a leaf of rows on either side)
/// row by row: their keys and hashes on both sides, then only the rows
/// whose hash the other side does not hold for the same key, kept.
fn compare_leaves(
    source: &mut SqlTables,
    target: &mut SqlTables,
    ti: usize,
    leaves: &[Range],
    stats: &mut RangeStats,
) -> Result<(Rows, Rows)> {
    if leaves.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (hs, ht) = both(source, target, |side| side.hashes(ti, leaves))?;
    stats.hashes_read += (hs.len() + ht.len()) as u64;
    stats.bytes_read += hs
        .iter()
        .chain(&ht)
        .map(|(_, _, k)| 16 + k.as_deref().map_or(0, bytes_of))
        .sum::<u64>();
    // A row's hash covers its key: a hash one side holds and the other
    // does not is a row that differs (or is missing there).
    let set = |side: &[Hashed]| side.iter().map(|(_, h, _)| *h).collect::<HashSet<_>>();
    let (ss, st) = (set(&hs), set(&ht));
    let lacking = |side: Vec<Hashed>, other: &HashSet<[i64; 2]>| {
        side.into_iter()
            .filter(|(_, h, _)| !other.contains(h))
            .collect::<Vec<_>>()
    };
    let (ws, wt) = (lacking(hs, &st), lacking(ht, &ss));
    let (rs, rt) = each(
        source,
        target,
        |s| s.rows_of(ti, leaves, ws),
        |s| s.rows_of(ti, leaves, wt),
    )?;
    stats.rows_read += (rs.len() + rt.len()) as u64;
    stats.bytes_read += rs.iter().chain(&rt).map(|r| bytes_of(r)).sum::<u64>();
    Ok((rs, rt))
}

/// The schemas of both sides' tables when they are in one PostgreSQL
/// database (the same server, started at the same moment, the same
/// database); `None` otherwise, or for another engine.
fn same_database(source: &mut SqlTables, target: &mut SqlTables) -> Result<Option<(String, String)>> {
    let whereabouts = |side: &mut SqlTables| -> Result<Option<Vec<SqlValue>>> {
        let Backend::Sql { engine, dialect, .. } = &mut side.backend else {
            return Ok(None);
        };
        if !is_postgres(dialect) {
            return Ok(None);
        }
        let origin = side.tables.first().map(|t| t.origin()).unwrap_or_default();
        let sql = "SELECT current_database(), coalesce(inet_server_port()::text, ''), \
                   pg_postmaster_start_time()::text, current_schema()";
        let mut found = None;
        engine.query(&origin, sql, &[], &[ValueKind::String; 4], &mut |row| {
            found = Some(row);
            Ok(())
        })?;
        Ok(found)
    };
    let (Some(s), Some(t)) = (whereabouts(source)?, whereabouts(target)?) else {
        return Ok(None);
    };
    let text = |v: &SqlValue| match v {
        SqlValue::Text(t) => Some(t.clone()),
        _ => None,
    };
    if s[..3] != t[..3] {
        return Ok(None);
    }
    Ok(text(&s[3]).zip(text(&t[3])))
}

#[cfg(feature = "postgres")]
fn is_postgres(dialect: &Dialect) -> bool {
    std::ptr::eq(dialect, &crate::postgres::DIALECT)
}

#[cfg(not(feature = "postgres"))]
fn is_postgres(_: &Dialect) -> bool {
    false
}

/// The rows of each table that differ between two schemas of one
/// database: one `FULL OUTER JOIN` on the key per table, run by the
/// database on the source's connection, giving back only the rows that
/// one side lacks or that differ in a compared column.
fn joined(
    source: &mut SqlTables,
    (ours, theirs): &(String, String),
    stats: &mut RangeStats,
    progress: &mut dyn FnMut(&RangeStats),
) -> Result<Vec<(Rows, Rows)>> {
    let Backend::Sql { engine, .. } = &mut source.backend else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::with_capacity(source.tables.len());
    for t in &source.tables {
        let cols: Vec<String> = t.column_names().iter().map(|c| quote(c)).collect();
        let side = |alias: &str| {
            cols.iter()
                .map(|c| format!("{alias}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let on = t.columns[..t.n_ids]
            .iter()
            .map(|c| format!("s.{0} = t.{0}", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let compared = |alias: &str| {
            hashed_columns(t)
                .iter()
                .map(|(c, _)| format!("{alias}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // An identifier is part of the primary key, never NULL in a row:
        // NULL in a half is the side the join found no row on.
        let first_id = quote(&t.columns[0].name);
        let sql = format!(
            "SELECT {}, {} FROM {}.{name} AS s FULL OUTER JOIN {}.{name} AS t ON {on} \
             WHERE s.{first_id} IS NULL OR t.{first_id} IS NULL OR ({}) IS DISTINCT FROM ({})",
            side("s"),
            side("t"),
            quote(ours),
            quote(theirs),
            compared("s"),
            compared("t"),
            name = t.name,
        );
        let kinds = row_kinds(t);
        let width = kinds.len();
        let mut both_kinds = kinds.clone();
        both_kinds.extend(kinds);
        let mut keep: (Rows, Rows) = (Vec::new(), Vec::new());
        engine.query(&t.origin(), &sql, &[], &both_kinds, &mut |mut row| {
            let theirs = row.split_off(width);
            for (half, out) in [(row, &mut keep.0), (theirs, &mut keep.1)] {
                if !matches!(half.first(), Some(SqlValue::Null) | None) {
                    out.push(half);
                }
            }
            Ok(())
        })?;
        // Each side's row count, as the ranges' first fingerprints give it
        // (a sync's rails judge the whole tables).
        let counts = format!(
            "SELECT (SELECT count(*) FROM {ours}.{name}), (SELECT count(*) FROM {theirs}.{name})",
            ours = quote(ours),
            theirs = quote(theirs),
            name = t.name,
        );
        engine.query(&t.origin(), &counts, &[], &[ValueKind::Integer; 2], &mut |row| {
            let [s, t] = ints(&row)?;
            stats.source_rows += s as u64;
            stats.target_rows += t as u64;
            Ok(())
        })?;
        stats.queries += 2;
        stats.joined += 1;
        stats.rows_read += (keep.0.len() + keep.1.len()) as u64;
        stats.bytes_read += keep.0.iter().chain(&keep.1).map(|r| bytes_of(r)).sum::<u64>() + 2 * 8;
        stats.rows_kept += (keep.0.len() + keep.1.len()) as u64;
        progress(stats);
        kept.push(keep);
    }
    Ok(kept)
}

/// Both sides hold the same model types with the same columns, in the
/// same order; else an error naming the first type that differs.
fn check_same_tables(source: &SqlTables, target: &SqlTables) -> Result<()> {
    let shape =
        |t: &Table| -> Vec<(String, ValueKind)> { t.columns.iter().map(|c| (c.name.to_string(), c.kind)).collect() };
    let names = |s: &SqlTables| s.tables.iter().map(|t| t.model_type.clone()).collect::<Vec<_>>();
    if names(source) != names(target) {
        return Err(AdapterError::backend(
            "range diff",
            format!(
                "the sides hold other model types: {:?} and {:?}",
                names(source),
                names(target)
            ),
        ));
    }
    for (a, b) in source.tables.iter().zip(&target.tables) {
        if shape(a) != shape(b) || a.n_ids != b.n_ids {
            return Err(AdapterError::backend(
                "range diff",
                format!("model type {:?} has other fields on the two sides", a.model_type),
            ));
        }
    }
    Ok(())
}

/// `f` on both sides at once, each on a thread of its own (each side's
/// database works on its queries while the other's does).
fn both<T: Send>(
    source: &mut SqlTables,
    target: &mut SqlTables,
    f: impl Fn(&mut SqlTables) -> Result<T> + Sync,
) -> Result<(T, T)> {
    each(source, target, &f, &f)
}

/// `ours` on the source and `theirs` on the target, at once.
fn each<T: Send>(
    source: &mut SqlTables,
    target: &mut SqlTables,
    ours: impl FnOnce(&mut SqlTables) -> Result<T>,
    theirs: impl FnOnce(&mut SqlTables) -> Result<T> + Send,
) -> Result<(T, T)> {
    std::thread::scope(|scope| {
        let theirs = scope.spawn(|| theirs(target));
        let ours = ours(source);
        let theirs = theirs.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((ours?, theirs?))
    })
}

/// Rows of one table, as read.
type Rows = Vec<Vec<SqlValue>>;

/// Where the comparison hands the rows it keeps, a table's (by index) and
/// a batch of leaves' at a time, both sides still at hand.
type Sink<'a> = dyn FnMut(&mut SqlTables, &mut SqlTables, usize, (Rows, Rows), &mut RangeStats) -> Result<()> + 'a;

/// A row of a leaf: the leaf it is in, its hash, and its key where it was
/// read with it.
type Hashed = (usize, [i64; 2], Option<Vec<SqlValue>>);

/// A row read as a flat record, with its model type.
type Record = (String, serde_json::Map<String, serde_json::Value>);

/// Adds to both sides' records the parents the kept rows name (and
/// theirs), read from both sides alike: a parent read on one side only
/// would be a difference that is not there.
fn with_parents(
    source: &mut SqlTables,
    target: &mut SqlTables,
    records: &mut (Vec<Record>, Vec<Record>),
    stats: &mut RangeStats,
) -> Result<()> {
    let parent_of = |r: &Record| match r.1.get(PARENT_KEY) {
        Some(serde_json::Value::String(p)) => Some((r.0.clone(), p.clone())),
        _ => None,
    };
    let mut seen: HashSet<String> = records
        .0
        .iter()
        .chain(&records.1)
        .filter_map(|(t, r)| {
            let schema = source.registry.schema(t).ok()?;
            Some(format!("{t}:{}", crate::registry::key_of(schema, r)))
        })
        .collect();
    let mut pending: Vec<(String, String)> = records.0.iter().chain(&records.1).filter_map(parent_of).collect();
    while let Some((child_type, text)) = pending.pop() {
        let Ok(Some(parent)) = parent_key(&source.registry, &child_type, &text) else {
            continue;
        };
        if !seen.insert(format!("{}:{}", parent.model_type(), parent.unique_id())) {
            continue;
        }
        for (side, out) in [(&mut *source, &mut records.0), (&mut *target, &mut records.1)] {
            stats.queries += 1;
            if let Some(record) = side.one(&parent)? {
                stats.rows_read += 1;
                stats.bytes_read += record.1.values().map(json_bytes).sum::<u64>();
                pending.extend(parent_of(&record));
                out.push(record);
            }
        }
    }
    Ok(())
}

impl SqlTables {
    /// Statements this side ran for range comparisons.
    fn asked(&self) -> u64 {
        match &self.backend {
            Backend::Sql { asked, .. } => *asked,
            Backend::Memory(_) => 0,
        }
    }

    /// The kept rows (by table, in the tables' order) as records.
    fn records(&self, kept: Vec<Rows>) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        for (t, rows) in self.tables.iter().zip(kept) {
            for row in rows {
                records.push((t.model_type.clone(), t.record(row)?));
            }
        }
        Ok(records)
    }

    /// The row of the model `key` names, as a record (`None`: not here).
    fn one(&mut self, key: &diffsync::ModelKey) -> Result<Option<Record>> {
        let Some(ti) = self.tables.iter().position(|t| t.model_type == key.model_type()) else {
            // A type no table holds: the error that names the tables.
            return sql::table(&self.tables, key.model_type()).map(|_| None);
        };
        let t = &self.tables[ti];
        let values = key.values();
        if values.len() != t.n_ids {
            return Ok(None);
        }
        let params = t.columns[..t.n_ids]
            .iter()
            .zip(values)
            .map(|(c, v)| t.to_sql(&c.name, &v.to_value(), key.unique_id()))
            .collect::<Result<Vec<_>>>()?;
        let row = match &mut self.backend {
            Backend::Sql { engine, .. } => engine.one_row(t, &params)?,
            Backend::Memory(m) => {
                let table = &m[ti];
                let at = table
                    .rows
                    .partition_point(|(r, _)| key_cmp(&r[..t.n_ids], &params).is_lt());
                table
                    .rows
                    .get(at)
                    .filter(|(r, _)| key_cmp(&r[..t.n_ids], &params).is_eq())
                    .map(|(r, _)| r.clone())
            }
        };
        row.map(|row| Ok((t.model_type.clone(), t.record(row)?))).transpose()
    }

    /// An image of this side holding these records.
    fn image(&self, records: Vec<Record>) -> Result<LocalStore> {
        let mut store = LocalStore::new(&self.name);
        self.registry.register_all(&mut store)?;
        let mut loader = FlatLoader::default();
        for (model_type, record) in records {
            let origin = sql::table(&self.tables, &model_type)?.origin();
            loader.insert(&self.registry, &mut store, &model_type, record, &origin)?;
        }
        loader.finish(&self.registry, &mut store)?;
        Ok(store)
    }
}

/// A 64-bit row hash's high and low 32 bits, as the databases give them.
fn halves(hash: i64) -> [i64; 2] {
    [(hash >> 32) & 0xffff_ffff, hash & 0xffff_ffff]
}

/// Key order as both engines sort identifier columns: `NULL` first, then
/// numbers, then text (bytewise).
fn key_cmp(a: &[SqlValue], b: &[SqlValue]) -> std::cmp::Ordering {
    fn rank(v: &SqlValue) -> u8 {
        match v {
            SqlValue::Null => 0,
            SqlValue::Int(_) | SqlValue::Real(_) | SqlValue::Bool(_) => 1,
            SqlValue::Text(_) => 2,
        }
    }
    fn number(v: &SqlValue) -> f64 {
        match v {
            SqlValue::Int(i) => *i as f64,
            SqlValue::Real(f) => *f,
            SqlValue::Bool(b) => f64::from(u8::from(*b)),
            _ => 0.0,
        }
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (SqlValue::Int(i), SqlValue::Int(j)) => i.cmp(j),
            (SqlValue::Text(s), SqlValue::Text(t)) => s.as_bytes().cmp(t.as_bytes()),
            _ if rank(x) != rank(y) => rank(x).cmp(&rank(y)),
            _ => number(x).total_cmp(&number(y)),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

impl MemTable {
    /// The positions of the first row of `range` and of the first after it.
    fn positions(&self, range: &Range) -> (usize, usize) {
        let at = |bound: &Option<Cow<'_, [SqlValue]>>, end: usize| match bound {
            None => end,
            Some(b) => self.rows.partition_point(|(r, _)| key_cmp(&r[..self.n_ids], b).is_lt()),
        };
        let from = at(&range.lo, 0);
        let to = at(&range.hi, self.rows.len());
        (from, to.max(from))
    }

    fn print(&self, range: &Range) -> Print {
        let (from, to) = self.positions(range);
        let (a, b) = (self.sums[from], self.sums[to]);
        Print {
            count: (to - from) as i64,
            hi: b[0] - a[0],
            lo: b[1] - a[1],
        }
    }

    /// Keys at every `count / parts`-th row of `range` (after its first),
    /// as the databases' windowed query picks them.
    fn bounds(&self, range: &Range, count: u64, parts: usize) -> Vec<Vec<SqlValue>> {
        let (from, to) = self.positions(range);
        let step = count.div_ceil(parts as u64).max(1) as usize;
        (from + step..to)
            .step_by(step)
            .map(|i| self.rows[i].0[..self.n_ids].to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::listed_place;

    #[test]
    fn a_place_a_list_was_not_given_is_an_error() {
        assert_eq!(listed_place(2, 3).unwrap(), 2);
        for wrong in [3, -1, i64::MAX, i64::MIN] {
            let e = listed_place(wrong, 3).unwrap_err().to_string();
            assert!(e.contains(&format!("answered for range {wrong}")), "{e}");
        }
    }
}
