//! The history as a feed, for apps that hand a device's conversations to other systems (the
//! bridge): [`Client::history_after`] and [`Client::recent_conversations`], both reads of
//! the store on a blocking thread (`crate::store::feed`).

use super::*;
use crate::store::feed::FeedPage;

impl Client {
    /// Up to `limit` history entries (incoming messages, this device's sent messages, and
    /// copies of what this account's other devices sent) with a position above `after`,
    /// oldest first, and the position to resume from ([`Store::history_after`]). The
    /// history is durable, so a consumer that keeps [`FeedPage::next`] loses nothing across
    /// restarts of either side.
    pub async fn history_after(&self, after: u64, limit: usize) -> Result<FeedPage, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        blocking(move || Ok(store.history_after(after, limit)?)).await
    }

    /// Accounts this device has history with, newest first, each with the position of its
    /// newest entry; at most `limit` ([`Store::recent_accounts`]).
    pub async fn recent_conversations(
        &self,
        limit: usize,
    ) -> Result<Vec<(AccountId, u64)>, ClientError> {
        let shared = self.shared()?;
        let store = shared.engine.store.clone();
        blocking(move || Ok(store.recent_accounts(limit)?)).await
    }
}
