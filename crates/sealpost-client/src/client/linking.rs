//! Linking devices (spec/devices.md section 6): the new device's side ([`Client::link`],
//! [`PendingLink`]) and the key holder's ([`Client::link_device`],
//! [`Client::link_device_as`], [`Client::update_device`], [`Client::remove_device`],
//! [`Client::own_devices`]).

use super::*;
use crate::engine::BundleLimits;
use crate::error::LinkFailure;
use crate::event::{DeviceActivity, DeviceInfo};
use crate::store::OwnDevices;
use sealpost_devices::{
    DeviceListPin, DeviceRole, LinkRequest, RoleFamily, Update, VerifiedDeviceList,
    parse_invitation, seal_provisioning,
};
use sealpost_wire::devices::{DeviceName, ProvisioningEnvelope};

/// A new device waiting to be linked to an account: show [`PendingLink::invitation_text`]
/// (as text or a QR code) to the account's key holder, who passes it to
/// [`Client::link_device`]; then [`PendingLink::complete`] finishes.
pub struct PendingLink {
    store: Store,
    config: ClientConfig,
    transport: Transport,
    conn: Connection,
    identity: IdentityKeyPair,
    request: LinkRequest,
    expires_at: tokio::time::Instant,
}

impl std::fmt::Debug for PendingLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLink").finish_non_exhaustive()
    }
}

fn link_error(e: sealpost_devices::LinkError) -> ClientError {
    ClientError::Link(LinkFailure::of(e))
}

impl Client {
    /// Starts linking a new device (this store) to an existing account: connects, opens a
    /// provisioning address at the relay (valid for 10 minutes) and makes the invitation.
    /// The store must not hold a registered device ([`ClientError::AlreadyRegistered`]).
    pub async fn link(store: Store, config: ClientConfig) -> Result<PendingLink, ClientError> {
        let s = store.clone();
        blocking(move || match s.account()? {
            Some(a) if a.device.is_some() => Err(ClientError::AlreadyRegistered),
            _ => Ok(()),
        })
        .await?;
        let transport = Transport::new(&config)?;
        let conn = transport.connect().await?;
        let (provisioning_id, expires_in) = conn.open_provisioning().await?;
        let identity = IdentityKeyPair::generate(&mut rand::rng());
        let request = LinkRequest::new(
            &mut rand::rng(),
            provisioning_id,
            identity.public().to_wire(),
        );
        Ok(PendingLink {
            store,
            config,
            transport,
            conn,
            identity,
            request,
            expires_at: tokio::time::Instant::now() + Duration::from_secs(u64::from(expires_in)),
        })
    }

    /// On the key holder: links the device that shows `invitation` (its text,
    /// `sealpost-link:...`) under the display name `name`: signs the next list with it and
    /// sends it the provisioning message through the relay. Returns the new device's id;
    /// the device joins when it completes ([`PendingLink::complete`]). Before the
    /// provisioning message leaves, the history bundle for the new device (its contacts
    /// and the newest messages, bounded by [`ClientConfig::history_bundle_max_messages`]
    /// and [`ClientConfig::history_bundle_max_age`]) is queued in the outbox; it is sent
    /// once the device has joined (spec/devices.md 8.7). Needs a connection.
    ///
    /// The new device gets the default role of the account's family: `linked` on a
    /// personal account, `agent` on a business account; [`Client::link_device_as`] chooses.
    pub async fn link_device(&self, invitation: &str, name: &str) -> Result<DeviceId, ClientError> {
        self.link_device_inner(invitation, name, None).await
    }

    /// [`Client::link_device`] with the new device's role: on a business account `admin`,
    /// `agent` or `bot`, on a personal account `linked`. A role that holds the account key
    /// (`primary`, `owner`) or is of the other family is
    /// [`LinkFailure::RoleNotAllowed`], and an invalid name [`LinkFailure::InvalidName`],
    /// before anything is sent.
    pub async fn link_device_as(
        &self,
        invitation: &str,
        name: &str,
        role: DeviceRole,
    ) -> Result<DeviceId, ClientError> {
        self.link_device_inner(invitation, name, Some(role)).await
    }

    async fn link_device_inner(
        &self,
        invitation: &str,
        name: &str,
        role: Option<DeviceRole>,
    ) -> Result<DeviceId, ClientError> {
        let invitation = parse_invitation(invitation).map_err(link_error)?;
        let provisioning_id = invitation.provisioning_id;
        let name = device_name(name)?;
        let shared = self.shared()?;
        // Checked against the stored own list before any request; again on the fresh one.
        let stored = stored_as_key_holder(&shared).await?;
        if let Some(role) = role {
            check_new_role(&stored, role)?;
        }
        let conn = shared.connection()?;
        let current = refresh_own_list(&shared, &conn)
            .await?
            .ok_or(ClientError::NotKeyHolder)?;
        let role = role.unwrap_or(match current.family() {
            RoleFamily::Consumer => DeviceRole::Linked,
            _ => DeviceRole::Agent,
        });
        check_new_role(&current, role)?;
        let engine = shared.engine.clone();
        // A business's new device gets contacts only (spec/business.md 7.4): conversations
        // reach agents by routing, not by linking.
        let max_messages = match current.family() {
            RoleFamily::Business => 0,
            _ => shared.config.history_bundle_max_messages,
        };
        let max_age = shared.config.history_bundle_max_age;
        let (id, envelope) = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            let body = key
                .link_device(&current, invitation.identity, role, name, now_ms())
                .map_err(link_error)?;
            let sealed =
                seal_provisioning(&mut rand::rng(), &invitation, &body).map_err(link_error)?;
            let envelope = ProvisioningEnvelope::decode(&sealed)?;
            // The history bundle for the new device (spec/devices.md 8.7) is committed to
            // the outbox before `Provision` leaves: once the device can join, its bundle is
            // queued, whatever happens to this process (spec/client-store.md 6.2).
            let now = now_ms();
            engine.queue_history_bundle(
                DeviceId(body.device_id),
                BundleLimits::new(max_messages, max_age, now),
                now,
            )?;
            Ok((body.device_id, envelope))
        })
        .await?;
        if let Err(e) = conn.provision(provisioning_id, envelope).await {
            // A refusal stored nothing: the device cannot join with this list, and its
            // history parts would hold the account's own queue until they expire. (A lost
            // answer keeps them: the envelope may have been stored.)
            if e.relay_code().is_some() {
                let engine = shared.engine.clone();
                let dropped = blocking(move || engine.drop_history_parts(DeviceId(id))).await?;
                tracing::info!(
                    dropped,
                    "link refused by the relay; its history parts dropped"
                );
            }
            return Err(e);
        }
        shared.outbox_wake.notify_one();
        // The new device publishes the next list when it joins: read it again before the
        // next sent copy is decided (spec/client-store.md section 6.1).
        shared.list_stale(&shared.engine.address.account);
        Ok(DeviceId(id))
    }

    /// On the key holder: unlinks device `device`: publishes the next list without it.
    /// The relay removes the device at once; contacts stop encrypting to it when they see
    /// the new list. Needs a connection.
    pub async fn remove_device(&self, device: DeviceId) -> Result<(), ClientError> {
        let shared = self.shared()?;
        let conn = shared.connection()?;
        let current = refresh_own_list(&shared, &conn)
            .await?
            .ok_or(ClientError::NotKeyHolder)?;
        let engine = shared.engine.clone();
        let next = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            key.remove_device(&current, device.0, now_ms())
                .map_err(link_error)
        })
        .await?;
        conn.publish_device_list(next.signed().clone()).await?;
        let engine = shared.engine.clone();
        blocking(move || engine.set_own_list(next)).await
    }

    /// On the key holder: changes device `device`'s display name and/or role (`None` keeps
    /// it) by signing and publishing the next list version with the entry changed: same
    /// id, identity and binding (spec/devices.md 8.9). The key holder may rename itself but
    /// keeps its role; any other device may take any role of the account's family that
    /// does not hold the account key ([`LinkFailure::RoleNotAllowed`] otherwise, before
    /// anything is sent). An id not on the list is [`LinkFailure::UnknownDevice`]. Contacts
    /// see [`ClientEvent::DevicesChanged`] with the device in `changed` when they next
    /// fetch the list, and the new name and role on its later messages. Returns the entry
    /// as it is now (unchanged, and nothing published, when nothing changes). Needs a
    /// connection.
    pub async fn update_device(
        &self,
        device: DeviceId,
        name: Option<&str>,
        role: Option<DeviceRole>,
    ) -> Result<DeviceInfo, ClientError> {
        let name = name.map(device_name).transpose()?;
        let shared = self.shared()?;
        check_update(&stored_as_key_holder(&shared).await?, device, role)?;
        let conn = shared.connection()?;
        let current = refresh_own_list(&shared, &conn)
            .await?
            .ok_or(ClientError::NotKeyHolder)?;
        let entry = check_update(&current, device, role)?;
        let name = name.unwrap_or_else(|| entry.name.clone());
        let role = role.unwrap_or(entry.role);
        if name == entry.name && role == entry.role {
            return Ok(DeviceInfo::of(&entry));
        }
        let engine = shared.engine.clone();
        let next = blocking(move || {
            let own = engine.own_devices()?.ok_or(ClientError::NotKeyHolder)?;
            let key = own.account_key.as_ref().ok_or(ClientError::NotKeyHolder)?;
            key.update_device(&current, device.0, name, role, now_ms())
                .map_err(link_error)
        })
        .await?;
        let info = next
            .device(device.0)
            .map(DeviceInfo::of)
            .ok_or(ClientError::Link(LinkFailure::UnknownDevice { device }))?;
        conn.publish_device_list(next.signed().clone()).await?;
        let engine = shared.engine.clone();
        blocking(move || engine.set_own_list(next)).await?;
        Ok(info)
    }

    /// This account's devices as its signed list names them (id, name, role): fetched
    /// from the relay when connected (and checked against the stored list with the update
    /// rule), else as last known. Empty for a store that has no list yet.
    pub async fn own_devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let shared = self.shared()?;
        let list = match shared.connection() {
            Ok(conn) => refresh_own_list(&shared, &conn).await?,
            Err(_) => {
                let engine = shared.engine.clone();
                blocking(move || Ok(engine.own_devices()?.map(|o| o.list))).await?
            }
        };
        Ok(list
            .map(|l| l.entries().iter().map(DeviceInfo::of).collect())
            .unwrap_or_default())
    }

    /// When the relay last saw each device of this account, to the day (`DeviceActivity`,
    /// spec/relay.md 3.12): one entry per device the relay has registered for the account,
    /// in increasing id order, this device included. Only this account's own devices can be
    /// asked about. Pair it with [`Client::own_devices`] by id for names and roles. Needs a
    /// connection: waits up to the request timeout for one, then [`ClientError::Offline`].
    /// Works on any device of the account, key holder or not.
    pub async fn device_activity(&self) -> Result<Vec<DeviceActivity>, ClientError> {
        let shared = self.shared()?;
        let conn = shared.wait_connection().await?;
        let seen = conn.device_activity().await?;
        Ok(seen.iter().map(DeviceActivity::of).collect())
    }
}

#[cfg(feature = "hazmat")]
impl Client {
    /// Queues the history bundle for own device `target` now, as [`Client::link_device`]
    /// does; see [`crate::hazmat::send_history_bundle`].
    pub(crate) async fn queue_history(&self, target: DeviceId) -> Result<usize, ClientError> {
        let shared = self.shared()?;
        let engine = shared.engine.clone();
        let (max_messages, max_age) = (
            shared.config.history_bundle_max_messages,
            shared.config.history_bundle_max_age,
        );
        let parts = blocking(move || {
            let now = now_ms();
            engine.queue_history_bundle(target, BundleLimits::new(max_messages, max_age, now), now)
        })
        .await?;
        shared.outbox_wake.notify_one();
        Ok(parts)
    }
}

/// The stored own list, on the key holder ([`ClientError::NotKeyHolder`] elsewhere).
async fn stored_as_key_holder(shared: &Arc<Shared>) -> Result<VerifiedDeviceList, ClientError> {
    let engine = shared.engine.clone();
    blocking(move || match engine.own_devices()? {
        Some(own) if own.account_key.is_some() => Ok(own.list),
        _ => Err(ClientError::NotKeyHolder),
    })
    .await
}

/// A display name, checked (spec/devices.md section 3.1).
fn device_name(name: &str) -> Result<DeviceName, ClientError> {
    DeviceName::new(name).map_err(|_| ClientError::Link(LinkFailure::InvalidName))
}

/// Whether a new device may be linked to `list` with `role`: not a key-holder role, and of
/// the list's family.
fn check_new_role(list: &VerifiedDeviceList, role: DeviceRole) -> Result<(), ClientError> {
    if role.holds_account_key() || role.family() != list.family() {
        return Err(ClientError::Link(LinkFailure::RoleNotAllowed { role }));
    }
    Ok(())
}

/// Whether device `device` of `list` may take `role` (`None`: keeps its own); returns its
/// entry. The key holder keeps its role; others take a role of the family that does not
/// hold the account key.
fn check_update(
    list: &VerifiedDeviceList,
    device: DeviceId,
    role: Option<DeviceRole>,
) -> Result<sealpost_devices::DeviceEntry, ClientError> {
    let entry = list
        .device(device.0)
        .ok_or(ClientError::Link(LinkFailure::UnknownDevice { device }))?;
    if let Some(role) = role {
        let allowed = if entry.role.holds_account_key() {
            role == entry.role
        } else {
            !role.holds_account_key() && role.family() == list.family()
        };
        if !allowed {
            return Err(ClientError::Link(LinkFailure::RoleNotAllowed { role }));
        }
    }
    Ok(entry.clone())
}

/// Fetches this account's list from the relay and, when it is a valid newer list under
/// the same account key (the update rule, spec/devices.md section 5), stores it as the own
/// list. Returns the own list (`None` before this account has one).
pub(super) async fn refresh_own_list(
    shared: &Arc<Shared>,
    conn: &Connection,
) -> Result<Option<VerifiedDeviceList>, ClientError> {
    let engine = shared.engine.clone();
    if blocking(move || engine.own_devices()).await?.is_none() {
        return Ok(None);
    }
    let account = shared.engine.address.account.clone();
    let fetched = conn.fetch_device_list(&account).await?;
    let engine = shared.engine.clone();
    blocking(move || {
        let Some(own) = engine.own_devices()? else {
            return Ok(None);
        };
        let Some(fetched) = fetched else {
            return Ok(Some(own.list));
        };
        let bytes = fetched.encode()?;
        let Ok(list) = VerifiedDeviceList::verify(&bytes, &account) else {
            return Err(ClientError::DeviceListRefused(
                crate::DeviceListRefusal::Invalid,
            ));
        };
        match DeviceListPin::new(own.list.clone()).check(&list) {
            Ok(Update::Advanced(_)) => {
                engine.set_own_list(list.clone())?;
                Ok(Some(list))
            }
            Ok(Update::Unchanged) => Ok(Some(own.list)),
            Err(e) => Err(ClientError::DeviceListRefused(
                crate::DeviceListRefusal::of(e).unwrap_or(crate::DeviceListRefusal::Invalid),
            )),
        }
    })
    .await
}

impl PendingLink {
    /// The invitation to show the key holder: `sealpost-link:` and 152 base64url
    /// characters (spec/devices.md 6.2); also the content of the QR code.
    pub fn invitation_text(&self) -> String {
        self.request.invitation_text()
    }

    /// Waits for the key holder's provisioning message (until the invitation expires:
    /// [`LinkFailure::Expired`]), checks it, joins the account (`LinkDevice`), stores the
    /// device and its account's list, authenticates and publishes prekeys. Returns the
    /// running client, like [`Client::open`].
    pub async fn complete(self) -> Result<(Client, EventReceiver), ClientError> {
        let link = loop {
            let pushes =
                match tokio::time::timeout_at(self.expires_at, self.conn.accept_pushes()).await {
                    Err(_) => return Err(ClientError::Link(LinkFailure::Expired)),
                    Ok(r) => r?,
                };
            let opened = pushes.into_iter().find_map(|p| match p {
                Push::Provisioning { envelope, .. } => Some(self.request.open(&envelope.encode())),
                _ => None,
            });
            match opened {
                Some(Ok(link)) => break link,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "provisioning message refused");
                    return Err(link_error(e));
                }
                None => continue,
            }
        };
        let account = link.account().clone();
        let device = link.device_id();
        let identity = self.identity;
        let list = link.complete(|m| identity.sign(m)).map_err(link_error)?;
        let device_id = self
            .conn
            .link_device(list.signed().clone(), list.as_bytes(), device, &identity)
            .await?;
        if device_id != device {
            return Err(ClientError::protocol(
                ProtocolViolation::UnexpectedResponse {
                    request: "LinkDevice",
                    response: "Registered with another device id",
                },
            ));
        }
        let record = AccountRecord {
            identity,
            account,
            device: Some(DeviceId(device_id)),
            registered_at: now_ms(),
        };
        let s = self.store.clone();
        let saved = record.clone();
        blocking(move || {
            let mut batch = Batch::new();
            s.put_account(&mut batch, &saved);
            s.put_own_devices(
                &mut batch,
                &OwnDevices {
                    account_key: None,
                    list,
                    published: true,
                },
            );
            Ok(s.commit(batch)?)
        })
        .await?;
        tracing::info!(device = device_id, "device linked");
        let engine = Arc::new(Engine::new(self.store, &record, self.config.session)?);
        let ((one_time, kem), _queued, _sender_seq) = self
            .conn
            .authenticate(&engine.identity, &engine.address)
            .await?;
        let (shared, events) = Client::start(engine, self.config, self.transport, true);
        shared.set_prekey_counts((one_time, kem));
        maintain_prekeys(&shared, &self.conn).await?;
        Ok((Client::launch(shared, Some(self.conn)), events))
    }
}
