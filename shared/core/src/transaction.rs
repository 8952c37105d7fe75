//! Transactions whose writes carry names, so a failed condition reads as which write failed
//! (`Rejected::Condition(SubmitWrite::ProjectRound)`) instead of as a position in a list.

use crate::ports::{Table, TableError, Write};

/// Writes of one transaction, each with the name the use case gives it.
pub(crate) struct Transaction<N> {
    writes: Vec<Write>,
    names: Vec<N>,
}

/// Why a transaction applied nothing.
#[derive(Debug)]
pub(crate) enum Rejected<N> {
    /// The condition of the write with this name did not hold.
    Condition(N),
    /// Another transaction touched the same items at the same time; a retry may succeed.
    Conflict,
    /// Anything else: the table refused or could not be reached.
    Table(TableError),
}

impl<N: Clone> Transaction<N> {
    pub(crate) fn new() -> Self {
        Self {
            writes: Vec::new(),
            names: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, name: N, write: Write) {
        self.writes.push(write);
        self.names.push(name);
    }

    pub(crate) fn extend(&mut self, writes: impl IntoIterator<Item = (N, Write)>) {
        for (name, write) in writes {
            self.push(name, write);
        }
    }

    pub(crate) async fn commit(self, table: &dyn Table) -> Result<(), Rejected<N>> {
        let Self { writes, mut names } = self;
        match table.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TableError::ConditionFailed { index }) if index < names.len() => {
                Err(Rejected::Condition(names.swap_remove(index)))
            }
            Err(TableError::TransactionConflict) => Err(Rejected::Conflict),
            Err(error) => Err(Rejected::Table(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ports::{Condition, Key};

    /// A table whose every transaction fails the condition of write `index`.
    struct FailsWrite(usize);

    #[async_trait::async_trait]
    impl Table for FailsWrite {
        async fn get(&self, _: &Key) -> Result<Option<crate::ports::Item>, TableError> {
            Ok(None)
        }
        async fn batch_get(&self, _: &[Key]) -> Result<Vec<crate::ports::Item>, TableError> {
            Ok(Vec::new())
        }
        async fn put(&self, _: crate::ports::Item, _: Option<Condition>) -> Result<(), TableError> {
            Ok(())
        }
        async fn update(
            &self,
            _: &Key,
            _: crate::ports::Update,
            _: Option<Condition>,
        ) -> Result<crate::ports::Item, TableError> {
            Err(TableError::TransactionConflict)
        }
        async fn delete(&self, _: &Key, _: Option<Condition>) -> Result<(), TableError> {
            Ok(())
        }
        async fn transact(&self, _: Vec<Write>) -> Result<(), TableError> {
            Err(TableError::ConditionFailed { index: self.0 })
        }
        async fn query(&self, _: crate::ports::Query) -> Result<crate::ports::Page, TableError> {
            Ok(crate::ports::Page::default())
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Name {
        Project,
        Item(u64),
    }

    fn check(sk: &str) -> Write {
        Write::Check {
            key: Key::new("P#p", sk),
            condition: Condition::Exists,
        }
    }

    #[tokio::test]
    async fn a_failed_condition_names_the_write_it_guarded() {
        let mut transaction = Transaction::new();
        transaction.push(Name::Project, check("META"));
        transaction.extend([7, 8].map(|item| (Name::Item(item), check(&format!("ITEM#{item}")))));
        match transaction.commit(&FailsWrite(2)).await {
            Err(Rejected::Condition(name)) => assert_eq!(name, Name::Item(8)),
            other => panic!("expected the second item's condition, got {other:?}"),
        }
    }
}
