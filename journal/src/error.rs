//! What can go wrong keeping or using the journal.

use crate::record::RunId;

/// What can go wrong keeping or using the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The database failed.
    #[error("journal: cannot {doing}")]
    Db {
        /// What the journal was doing.
        doing: &'static str,
        /// The database's error.
        #[source]
        source: crate::db::DbError,
    },
    /// No run has this id (never recorded, or dropped by retention).
    #[error("journal: no {0}")]
    NoRun(RunId),
    /// A stored record cannot be read back.
    #[error("journal: {run} is unreadable: {message}")]
    Corrupt {
        /// The run.
        run: RunId,
        /// What is wrong.
        message: String,
    },
    /// The run was recorded, and stopped with this error.
    #[error("{run} stopped")]
    Run {
        /// The run, as recorded (failed, with what it did until then).
        run: RunId,
        /// Why it stopped.
        #[source]
        source: Box<diffsync::Error>,
    },
    /// A rollback's preview could not be planned against its target.
    #[error("journal: cannot plan the rollback of {run}")]
    Preview {
        /// The run.
        run: RunId,
        /// Why.
        #[source]
        source: Box<diffsync::Error>,
    },
    /// The database holds tables of another application: nothing in it
    /// was touched.
    #[error("journal: {path} is not a diffsync journal (it holds other tables: {tables}); nothing in it was changed")]
    NotAJournal {
        /// The file.
        path: String,
        /// Some of the tables it holds.
        tables: String,
    },
    /// The journal was written by a newer diffsync, whose layout this one
    /// does not know: nothing in it was changed.
    #[error("journal: its layout is version {found}, newer than this diffsync's ({supported}); upgrade diffsync")]
    Newer {
        /// The journal's.
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// A rollback cannot start: the run is unfinished, a dry run, or
    /// recorded for another target.
    #[error("journal: cannot roll back {run}: {reason}")]
    NotUndoable {
        /// The run.
        run: RunId,
        /// Why.
        reason: String,
    },
}

impl JournalError {
    pub(crate) fn db<E: Into<crate::db::DbError>>(doing: &'static str) -> impl Fn(E) -> JournalError {
        move |source| JournalError::Db {
            doing,
            source: source.into(),
        }
    }
}
