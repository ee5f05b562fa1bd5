//! A business's desk (spec/business.md 8 and 9): claiming, transferring and resolving
//! customer conversations among the business's own devices, internal notes, and the
//! conversations this device knows with their handoff checks.

use super::*;
pub use crate::engine::{DeskConversation, DeskNote, HandoffInfo};
use sealpost_devices::VerifiedRoute;
use sealpost_wire::business::ConversationState;

impl Client {
    /// On a business's device: takes the conversation with `customer` (spec/business.md
    /// 8.1): signs the next conversation route naming this device alone and queues it to
    /// the customer (whose client then encrypts to this device and the owner only) and to
    /// every other device of the business. Allowed on the owner and admins, and on a device
    /// of the conversation's current route (an agent on duty, a bot that has it). Returns
    /// the route version.
    ///
    /// Errors: [`ClientError::NotBusiness`]; [`ClientError::RouteRefused`] with
    /// `Unauthorized` for a device that may not route the conversation.
    pub async fn claim(&self, customer: &AccountId) -> Result<u64, ClientError> {
        let me = self.address().device;
        self.assign(customer, vec![me], ConversationState::Open, None)
            .await
    }

    /// On a business's device: hands the conversation with `customer` to `to` (one or more
    /// devices of the business, spec/business.md 8.1 and 8.3): as [`Client::claim`], and
    /// sends `to` and the owner the conversation so far (a handoff with `note`, which never
    /// reaches the customer). The customer's client confirms its transcript to the new
    /// devices, which check the handoff against it ([`ClientEvent::HandoffChecked`]).
    ///
    /// Errors: as [`Client::claim`]; [`ClientError::UnknownDevice`] for a device not on
    /// the list; [`ClientError::NoteRefused`] for a note over 4096 bytes;
    /// [`ClientError::HandoffTooLarge`] for a conversation that does not fit one handoff
    /// (64 parts of about 256 KiB each, spec/business.md 8.2).
    pub async fn transfer(
        &self,
        customer: &AccountId,
        to: &[DeviceId],
        note: &str,
    ) -> Result<u64, ClientError> {
        self.assign(
            customer,
            to.to_vec(),
            ConversationState::Open,
            Some(note.to_owned()),
        )
        .await
    }

    /// On a business's device: resolves the conversation with `customer`: it goes back to
    /// the business's default route (every device when it has none) with the conversation
    /// so far, so that whoever answers the customer's next message has read it.
    pub async fn resolve(&self, customer: &AccountId) -> Result<u64, ClientError> {
        let shared = self.shared()?;
        refresh_own_desk(&shared).await;
        let engine = shared.engine.clone();
        let devices = blocking(move || {
            let list = engine
                .own_business_list()?
                .ok_or(ClientError::NotBusiness)?;
            let record = engine.store.business_record(list.account())?;
            let default = record
                .default_route
                .as_ref()
                .and_then(|r| VerifiedRoute::verify(r, &list, None, None).ok());
            let devices: Vec<DeviceId> = match default {
                Some(r) => r
                    .devices()
                    .iter()
                    .filter(|d| list.device(**d).is_some())
                    .map(|d| DeviceId(*d))
                    .collect(),
                None => Vec::new(),
            };
            Ok(if devices.is_empty() {
                list.entries()
                    .iter()
                    .map(|e| DeviceId(e.device_id))
                    .collect()
            } else {
                devices
            })
        })
        .await?;
        self.assign(
            customer,
            devices,
            ConversationState::Resolved,
            Some(String::new()),
        )
        .await
    }

    async fn assign(
        &self,
        customer: &AccountId,
        devices: Vec<DeviceId>,
        state: ConversationState,
        handoff: Option<String>,
    ) -> Result<u64, ClientError> {
        let shared = self.shared()?;
        if shared.is_shutting_down() {
            return Err(ClientError::ShutDown);
        }
        refresh_own_desk(&shared).await;
        let engine = shared.engine.clone();
        let customer = customer.clone();
        let version = blocking(move || {
            engine.assign(
                &customer,
                &devices,
                state,
                handoff.as_deref(),
                None,
                now_ms(),
            )
        })
        .await?;
        shared.outbox_wake.notify_one();
        Ok(version)
    }

    /// On a business's device: an internal note about the conversation with `customer`,
    /// sent end to end to the conversation's devices and the owner only (never to the
    /// customer).
    ///
    /// Errors: [`ClientError::NotBusiness`]; [`ClientError::NoteRefused`] for an empty note
    /// or one over 4096 bytes.
    pub async fn add_note(&self, customer: &AccountId, text: &str) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let customer = customer.clone();
        let text = text.to_owned();
        blocking(move || engine.add_note(&customer, &text, now_ms())).await?;
        shared.outbox_wake.notify_one();
        Ok(())
    }

    /// On a business's device: the customer conversations it knows, with who has each and
    /// the last handoff's check: those routed, noted, handed off or confirmed, then the other
    /// accounts of its recent history (unassigned), newest first.
    pub async fn conversations(&self) -> Result<Vec<DeskConversation>, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        blocking(move || engine.desk_conversations()).await
    }

    /// On a business's device: the conversation with `customer` (empty when unknown).
    pub async fn conversation(
        &self,
        customer: &AccountId,
    ) -> Result<DeskConversation, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let customer = customer.clone();
        blocking(move || engine.desk_conversation(&customer)).await
    }

    /// [`Client::transfer`] with the handoff's messages changed by `tamper` before they are
    /// sent (hazmat tests: a device that alters what it hands on).
    #[cfg(feature = "hazmat")]
    pub(crate) async fn transfer_tampered(
        &self,
        customer: &AccountId,
        to: &[DeviceId],
        note: &str,
        tamper: Box<crate::desk::HandoffTamper>,
    ) -> Result<u64, ClientError> {
        let shared = self.shared()?;
        refresh_own_desk(&shared).await;
        let engine = shared.engine.clone();
        let (customer, to, note) = (customer.clone(), to.to_vec(), note.to_owned());
        let version = blocking(move || {
            engine.assign(
                &customer,
                &to,
                ConversationState::Open,
                Some(&note),
                Some(&*tamper),
                now_ms(),
            )
        })
        .await?;
        shared.outbox_wake.notify_one();
        Ok(version)
    }
}

/// Before routing a conversation: the own list and the business's default route as the
/// relay has them now (a device linked since, a new default route), when connected; offline,
/// or when the fetch fails, the stored ones decide.
async fn refresh_own_desk(shared: &Arc<Shared>) {
    let Ok(conn) = shared.connection() else {
        return;
    };
    match super::linking::refresh_own_list(shared, &conn).await {
        Ok(Some(list)) => {
            shared.list_fetched(&shared.engine.address.account);
            super::business::refresh_business(shared, &conn, &list).await;
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "own list not refreshed before routing"),
    }
}
