//! The workload document read from a reader a buffer at a time, each site
//! record parsed whole from the buffer by serde_json's string parser (the
//! buffer is checked as UTF-8 once, as it is read, so serde_json need not
//! check each string again: that was a tenth of a load's instructions).
//!
//! serde_json's own reader (`from_reader`) goes through the input a byte
//! at a time, keeping the line and column of each: on the workload it
//! takes 40 % longer than the slice parser (`cargo bench -p
//! diffsync-examples --features bench -- parse`), and its string parsing
//! was a quarter of a load under perf. Here only the document's punctuation is stepped over by hand
//! (`{`, `"site"`, `:`, `[`, commas); every value is parsed by serde_json.

use std::io::Read;

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};

/// Bytes read at a time (a site record of the workload is about 14 KB; a
/// record longer than the buffer grows it).
pub(crate) const CHUNK: usize = 1 << 18;

/// The input, a buffer of it, and where the buffer starts in it.
pub(crate) struct Chunks<R> {
    reader: R,
    /// The text read and not yet consumed from `pos` on.
    buf: String,
    /// Bytes as read, checked as UTF-8 into `buf`; between reads, a
    /// character the last read cut in two.
    raw: Vec<u8>,
    chunk: usize,
    /// The next byte to read in `buf`.
    pos: usize,
    eof: bool,
    /// Lines before `buf[0]` (counted as bytes leave the buffer), and the
    /// column of `buf[0]` minus one: for error positions.
    lines: usize,
    column: usize,
}

impl<R: Read> Chunks<R> {
    pub(crate) fn new(reader: R, chunk: usize) -> Self {
        Chunks {
            reader,
            buf: String::with_capacity(chunk),
            raw: Vec::with_capacity(chunk),
            chunk,
            pos: 0,
            eof: false,
            lines: 0,
            column: 0,
        }
    }

    /// Drops what was read from the buffer and reads more after the rest;
    /// false at the end of the input.
    fn fill(&mut self) -> Result<bool, serde_json::Error> {
        if self.eof {
            return Ok(false);
        }
        let gone = &self.buf.as_bytes()[..self.pos];
        match memchr::memrchr(b'\n', gone) {
            Some(last) => {
                self.lines += memchr::memchr_iter(b'\n', gone).count();
                self.column = gone.len() - last - 1;
            }
            None => self.column += gone.len(),
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        // A record that fills the buffer: room for as much again.
        let want = if self.buf.len() > self.chunk / 2 {
            self.buf.len().max(self.chunk)
        } else {
            self.chunk
        };
        let len = self.raw.len();
        self.raw.resize(len + want, 0);
        let read = loop {
            match self.reader.read(&mut self.raw[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.raw.truncate(len + *read.as_ref().unwrap_or(&0));
        let n = read.map_err(serde_json::Error::io)?;
        self.eof = n == 0;
        // Checked once here; a character cut by the read waits for the next.
        let valid = match std::str::from_utf8(&self.raw) {
            Ok(text) => {
                self.buf.push_str(text);
                self.raw.len()
            }
            Err(e) if e.error_len().is_none() && !self.eof => {
                let valid = e.valid_up_to();
                self.buf
                    .push_str(std::str::from_utf8(&self.raw[..valid]).map_err(serde_json::Error::custom)?);
                valid
            }
            Err(e) => {
                let valid = e.valid_up_to();
                self.buf
                    .push_str(std::str::from_utf8(&self.raw[..valid]).map_err(serde_json::Error::custom)?);
                return Err(self.error("the input is not UTF-8", self.buf.len()));
            }
        };
        self.raw.drain(..valid);
        Ok(n > 0)
    }

    /// The next byte that is not whitespace, not consumed.
    pub(crate) fn peek(&mut self) -> Result<Option<u8>, serde_json::Error> {
        loop {
            while let Some(&b) = self.buf.as_bytes().get(self.pos) {
                if !b.is_ascii_whitespace() {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Consumes `byte` if it comes next (after whitespace).
    pub(crate) fn eat(&mut self, byte: u8) -> Result<bool, serde_json::Error> {
        let next = self.peek()? == Some(byte);
        self.pos += usize::from(next);
        Ok(next)
    }

    /// Consumes `byte` (after whitespace), or says it was expected.
    pub(crate) fn expect(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        match self.eat(byte)? {
            true => Ok(()),
            false => Err(self.error(&format!("expected `{}`", byte as char), self.pos)),
        }
    }

    /// Consumes a `,` or the `close` of a list or map (after whitespace):
    /// true when it was the close.
    pub(crate) fn comma_or(&mut self, close: u8) -> Result<bool, serde_json::Error> {
        match self.peek()? {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.error(&format!("expected `,` or `{}`", close as char), self.pos)),
        }
    }

    /// Parses the next value, whole from the buffer (read further while it
    /// runs past the buffer's end), and where it started: a place for
    /// [`error`](Self::error) until the next read.
    pub(crate) fn value<T: DeserializeOwned>(&mut self) -> Result<(T, usize), serde_json::Error> {
        if self.peek()?.is_none() {
            return Err(self.error("EOF while parsing a value", self.pos));
        }
        loop {
            let mut values = serde_json::Deserializer::from_str(&self.buf[self.pos..]).into_iter::<T>();
            let parsed = values.next();
            let end = self.pos + values.byte_offset();
            match parsed {
                // A value that ends the buffer may go on in the next read
                // (a number), unless the input ends there too.
                Some(Ok(v)) if end < self.buf.len() || self.eof => {
                    let start = self.pos;
                    self.pos = end;
                    return Ok((v, start));
                }
                Some(Err(e)) if !e.is_eof() || self.eof => return Err(self.relocate(e)),
                // Read on; at the end of the input, the parse again says
                // what is missing.
                _ => {
                    self.fill()?;
                }
            }
        }
    }

    /// Skips the next value.
    pub(crate) fn skip(&mut self) -> Result<(), serde_json::Error> {
        self.value::<IgnoredAny>().map(|_| ())
    }

    /// The input must end here (but for whitespace).
    pub(crate) fn end(&mut self) -> Result<(), serde_json::Error> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters", self.pos)),
        }
    }

    /// The line and column (from 1) of `buf[at]`.
    fn position(&self, at: usize) -> (usize, usize) {
        let before = &self.buf.as_bytes()[..at];
        match memchr::memrchr(b'\n', before) {
            Some(last) => (self.lines + memchr::memchr_iter(b'\n', before).count() + 1, at - last),
            None => (self.lines + 1, self.column + at + 1),
        }
    }

    /// An error at `buf[at]`, positioned in the whole input.
    pub(crate) fn error(&self, message: &str, at: usize) -> serde_json::Error {
        let (line, column) = self.position(at);
        serde_json::Error::custom(format!("{message} at line {line} column {column}"))
    }

    /// A value's error, positioned by serde_json from the value's start
    /// (`self.pos`), moved to its place in the whole input.
    fn relocate(&self, e: serde_json::Error) -> serde_json::Error {
        if e.line() == 0 {
            return e;
        }
        let (line, column) = self.position(self.pos);
        let (line, column) = if e.line() == 1 {
            (line, column + e.column() - 1)
        } else {
            (line + e.line() - 1, e.column())
        };
        let text = e.to_string();
        let message = text
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&text);
        serde_json::Error::custom(format!("{message} at line {line} column {column}"))
    }
}
