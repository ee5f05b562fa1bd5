//! Prekeys: `UploadPreKeys` (verified here), `FetchBundles` (with its quotas and drain notices).

use super::*;

/// Shortest interval between two drain notices (`PreKeysLow` pushed because an account's
/// bundle fetch budget is used up) to one account: one hour.
pub const DRAIN_NOTICE_INTERVAL_MS: u64 = 60 * 60 * 1000;

/// Verifies an upload against the uploading device's identity: every signature (with
/// `verify_strict`), every ML-KEM key (FIPS 203 modulus check), no duplicate ids within the
/// upload, at most one last-resort key. Returns the keys to store or a detail for
/// `InvalidPreKey`.
pub fn verify_upload(
    identity: &IdentityBytes,
    upload: &PreKeyUpload,
) -> Result<NewPreKeys, &'static str> {
    let key = VerifyingKey::from_bytes(&identity.signing).map_err(|_| "invalid identity key")?;
    if let Some(s) = &upload.signed_prekey {
        let msg = SignedPreKeyPublic::signed_bytes(&identity.dh, s.id, s.created_at, &s.public);
        key.verify(&msg, &Signature::from_bytes(s.signature))
            .map_err(|_| "signed prekey signature does not verify")?;
    }
    let mut one_time_ids = BTreeSet::new();
    if !upload
        .one_time
        .iter()
        .all(|(id, _)| one_time_ids.insert(*id))
    {
        return Err("duplicate one-time prekey id");
    }
    let mut kem_ids = BTreeSet::new();
    let mut kem_one_time = Vec::new();
    let mut kem_last_resort: Option<KemPreKeyPublic> = None;
    for k in &upload.kem {
        if !kem_ids.insert(k.id) {
            return Err("duplicate KEM prekey id");
        }
        let msg =
            KemPreKeyPublic::signed_bytes(&identity.dh, k.id, k.kind, k.created_at, &k.public);
        key.verify(&msg, &Signature::from_bytes(k.signature))
            .map_err(|_| "KEM prekey signature does not verify")?;
        KemPublic::from_slice(k.public.as_slice()).map_err(|_| "invalid ML-KEM public key")?;
        match k.kind {
            KemPreKeyKind::OneTime => kem_one_time.push(k.clone()),
            KemPreKeyKind::LastResort => {
                if kem_last_resort.replace(k.clone()).is_some() {
                    return Err("more than one last-resort KEM prekey");
                }
            }
        }
    }
    Ok(NewPreKeys {
        signed: upload.signed_prekey.clone(),
        one_time: upload.one_time.clone(),
        kem_one_time,
        kem_last_resort,
    })
}

impl Handler {
    pub(super) async fn upload(&self, me: &AuthenticatedDevice, upload: &PreKeyUpload) -> Response {
        let keys = match verify_upload(&me.identity, upload) {
            Ok(k) => k,
            Err(detail) => return Response::error(ErrorCode::InvalidPreKey, detail),
        };
        let limits = PreKeyLimits {
            max_one_time: self.limits.max_stored_one_time,
            max_kem_one_time: self.limits.max_stored_kem,
        };
        match self.store.store_prekeys(&me.address, &keys, &limits).await {
            Ok(UploadOutcome::Stored(c)) => Response::PreKeysStored {
                one_time_prekeys: c.one_time_prekeys,
                kem_prekeys: c.kem_prekeys,
            },
            Ok(UploadOutcome::UnknownDevice) => {
                Response::error(ErrorCode::Unauthenticated, "device is no longer registered")
            }
            Ok(UploadOutcome::IdConflict) => {
                Response::error(ErrorCode::InvalidPreKey, "prekey id already stored")
            }
            Ok(UploadOutcome::TooMany) => Response::error(
                ErrorCode::TooManyPreKeys,
                "upload would exceed the stored prekey limit",
            ),
            Err(e) => internal(&e),
        }
    }

    /// Charges a `FetchBundles` of `target` by `me` to the per-pair and per-target quotas
    /// (spec/relay.md 3.6). When the target's daily budget is used up, its devices are told
    /// with a `PreKeysLow` push (at most one per `DRAIN_NOTICE_INTERVAL_MS`): their bundles
    /// are being fetched abnormally often.
    pub(super) async fn take_fetch_quotas(
        &self,
        me: &AuthenticatedDevice,
        target: &AccountId,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Box<Response>> {
        // An account's own devices start sessions with each other (a business's owner,
        // bots and agents, up to 64): each of them gets its own pair budget for its own
        // account, so that linking the fourth device does not make the others wait for the
        // pair interval. Fetches of other accounts are counted per requesting account.
        let requester = if &me.address.account == target {
            format!("{}#{}", me.address.account.as_str(), me.address.device.0)
        } else {
            me.address.account.as_str().to_owned()
        };
        let quotas = [
            QuotaCheck {
                kind: QuotaKind::FetchPair,
                subject: format!("{requester} {}", target.as_str()),
                rate: self.limits.bundle_pair_rate(),
            },
            QuotaCheck {
                kind: QuotaKind::FetchTarget,
                subject: target.as_str().to_owned(),
                rate: self.limits.bundle_target_rate(),
            },
        ];
        match self.store.take_quotas(&quotas, now).await {
            Ok(QuotaOutcome::Taken) => Ok(()),
            Ok(QuotaOutcome::Exceeded {
                index,
                retry_after_ms,
            }) => {
                let kind = quotas.get(index).map_or(QuotaKind::FetchPair, |q| q.kind);
                if kind == QuotaKind::FetchTarget
                    && self.drain_notices.try_take(target, now).is_ok()
                {
                    tracing::warn!(account = ?target, "bundle fetch budget of an account used up");
                    self.drain_notice(target, effects).await;
                }
                Err(Box::new(rate_limited(
                    kind.as_str(),
                    secs_ceil(retry_after_ms).max(1),
                )))
            }
            Err(e) => Err(Box::new(internal(&e))),
        }
    }

    /// `PreKeysLow` with the current counts for every device of `target`.
    pub(super) async fn drain_notice(&self, target: &AccountId, effects: &mut Vec<Effect>) {
        let Ok(devices) = self.store.list_devices(target).await else {
            return;
        };
        for d in devices {
            let device = DeviceAddress::new(target.clone(), DeviceId(d.device_id));
            if let Ok(c) = self.store.prekey_counts(&device).await {
                effects.push(Effect::PreKeysLow {
                    device,
                    one_time_prekeys: c.one_time_prekeys,
                    kem_prekeys: c.kem_prekeys,
                });
            }
        }
    }

    pub(super) async fn fetch_bundles(
        &self,
        account: &AccountId,
        effects: &mut Vec<Effect>,
    ) -> Response {
        match self.store.take_bundles(account).await {
            Ok(None) => Response::error(ErrorCode::UnknownAccount, "no devices"),
            Ok(Some(taken)) => {
                let mut bundles = Vec::with_capacity(taken.len());
                for t in taken {
                    if t.remaining.one_time_prekeys < LOW_WATERMARK_ONE_TIME
                        || t.remaining.kem_prekeys < LOW_WATERMARK_KEM
                    {
                        effects.push(Effect::PreKeysLow {
                            device: DeviceAddress::new(
                                account.clone(),
                                DeviceId(t.bundle.device_id),
                            ),
                            one_time_prekeys: t.remaining.one_time_prekeys,
                            kem_prekeys: t.remaining.kem_prekeys,
                        });
                    }
                    bundles.push(t.bundle);
                }
                Response::Bundles(bundles)
            }
            Err(e) => internal(&e),
        }
    }
}
