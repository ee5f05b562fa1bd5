//! Which of a recipient's devices a `Send` addresses (spec/relay.md 3.7): exactly all of
//! them, or a routed subset of a business's (spec/business.md 7.3).

/// Which of the recipient's devices a `Send` must address (spec/relay.md 3.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Exactly the recipient's registered devices (but the excluded one), each once.
    Exact,
    /// A routed send to a business account (spec/business.md 7.3): distinct registered
    /// devices of the recipient (but the excluded one), at least one, including `required`
    /// when set (the key holder of its stored list, which the caller read; `None` when the
    /// key holder is the sending device itself).
    Subset {
        /// The device every such send must address.
        required: Option<u32>,
    },
}

impl Addressing {
    /// Whether `given` (the envelopes' device ids, in request order) addresses `registered`
    /// (the recipient's registered devices) as asked, never addressing `exclude`.
    pub fn accepts(
        self,
        registered: impl IntoIterator<Item = u32>,
        exclude: Option<u32>,
        given: impl IntoIterator<Item = u32>,
    ) -> bool {
        let expected: std::collections::BTreeSet<u32> = registered
            .into_iter()
            .filter(|id| Some(*id) != exclude)
            .collect();
        let mut count = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for id in given {
            count += 1;
            if !expected.contains(&id) || !seen.insert(id) {
                return false;
            }
        }
        match self {
            Self::Exact => count == expected.len(),
            Self::Subset { required } => count > 0 && required.is_none_or(|r| seen.contains(&r)),
        }
    }
}
