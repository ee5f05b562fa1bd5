//! The customer's side of a business conversation (spec/business.md 7.3, 9.1, 9.2):
//! accepting conversation routes, and the transcript it keeps and confirms.

use super::*;

impl Engine {
    /// Adds a message of the conversation with the business `business` to its transcript
    /// (9.1), when `business` is a business; a transcript that cannot take it (too many
    /// chains) is left as it is (logged: the messages of that device stay unconfirmed).
    pub(in crate::engine) fn note_transcript(
        &self,
        batch: &mut Batch,
        business: &AccountId,
        side: Side,
        device: DeviceId,
        content: &[u8],
    ) -> Result<(), ClientError> {
        if business == &self.address.account || self.business_list(business)?.is_none() {
            return Ok(());
        }
        let mut t = self.store.transcript(business)?;
        if let Err(e) = t.append(side, device.0, content) {
            tracing::warn!(error = %e, "transcript chain not extended");
            return Ok(());
        }
        self.store.put_transcript(batch, business, &t)?;
        Ok(())
    }

    /// A route content from a device of a business (section 7.3): valid for this
    /// conversation after the route held, it replaces it and this device confirms its
    /// transcript to the new route (9.2). `Err(reason)` rejects the content.
    pub(in crate::engine) fn accept_route(
        &self,
        batch: &mut Batch,
        sender: &DeviceAddress,
        message: &RouteMessage,
        now_ms: u64,
    ) -> Result<Result<Vec<ClientEvent>, &'static str>, ClientError> {
        let route = &message.route;
        let Some(list) = self.business_list(&sender.account)? else {
            return Ok(Err("route from an account that is not a business"));
        };
        if list.device(sender.device.0).is_none() {
            return Ok(Err("route from a device not on the business's list"));
        }
        let me = self.address.account.clone();
        let current = self.current_route(&list, &me, message.basis.as_ref())?;
        let Ok(offered) = VerifiedRoute::verify(route, &list, Some(&me), current.as_ref()) else {
            return Ok(Err("route not valid for this conversation"));
        };
        let held = self.conversation_route(&list, Some(&me))?;
        match offered.replaces(held.as_ref()) {
            Ok(true) => {}
            Ok(false) | Err(RouteError::RolledBack { .. }) => return Ok(Ok(Vec::new())),
            Err(_) => return Ok(Err("route refused by the version rule")),
        }
        let mut record = self.store.business_record(&sender.account)?;
        record.conversation_route = Some(route.clone());
        self.store
            .put_business_record(batch, &sender.account, &record);
        let transcript = self.store.transcript(&sender.account)?;
        let confirmation = TranscriptConfirmation {
            route_version: offered.route_version(),
            chains: transcript.heads(),
        };
        let id = MessageId::random();
        let content = encode_transcript(&id, &confirmation)
            .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?;
        self.queue_control(batch, &sender.account, id, content, now_ms)?;
        let routed_to = offered
            .devices()
            .iter()
            .filter_map(|d| list.device(*d))
            .map(DeviceInfo::of)
            .collect();
        Ok(Ok(vec![ClientEvent::RouteChanged {
            business: sender.account.clone(),
            routed_to,
        }]))
    }

    /// A transcript confirmation about to be encrypted for the first time, with the chains
    /// as they are now (9.2): every message this device queued to the business before it
    /// has been accepted (the outbox sends in order per recipient), so its chain counts
    /// exactly them. `None` for any other entry, or one already encrypted.
    pub(in crate::engine) fn fresh_confirmation(
        &self,
        entry: &OutboxEntry,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        if entry.envelopes.is_some() {
            return Ok(None);
        }
        let Ok((_, Content::Transcript(held))) = crate::content::decode_any(&entry.content) else {
            return Ok(None);
        };
        let confirmation = TranscriptConfirmation {
            route_version: held.route_version,
            chains: self.store.transcript(&entry.recipient)?.heads(),
        };
        Ok(Some(
            encode_transcript(&entry.message_id, &confirmation)
                .map_err(|_| ClientError::Internal(crate::error::InternalError::Encoding))?,
        ))
    }
}
