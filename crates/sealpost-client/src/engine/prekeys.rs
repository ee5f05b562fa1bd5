//! Prekey maintenance: what to generate, rotate and retire, persisted before upload
//! (spec/client-store.md section 5.2).

use super::*;

impl Engine {
    /// Decides what to upload: a pending (unconfirmed) upload first; otherwise a new signed
    /// prekey and last-resort KEM prekey when missing or due for rotation, and one-time keys
    /// when the relay's counts are below the low watermarks. The new keys and the upload are
    /// persisted before returning, so a crash cannot lose keys the relay may serve.
    pub(crate) fn plan_prekeys(
        &self,
        counts: Option<(u32, u32)>,
        now_s: u64,
    ) -> Result<Option<PreKeyUpload>, ClientError> {
        let _g = self.lock()?;
        let mut state = self.store.prekeys()?.unwrap_or_default();
        if let Some(p) = &state.pending {
            return Ok(Some(p.clone()));
        }
        let mut changed = false;
        // Delete retired keys whose grace period is over (and the oldest beyond the bound).
        state.retired.sort_by_key(|k| k.retired_at);
        let excess = state.retired.len().saturating_sub(MAX_RETIRED_PREKEYS);
        let mut kept = Vec::with_capacity(state.retired.len());
        for (i, k) in state.retired.iter().enumerate() {
            if i < excess || k.retired_at.saturating_add(RETIRED_PREKEY_RETENTION_SECS) <= now_s {
                match k.kind {
                    RetiredKind::Signed => state.keys.remove_signed_prekey(k.id),
                    RetiredKind::Kem => state.keys.remove_kem_prekey(k.id),
                };
                changed = true;
            } else {
                kept.push(*k);
            }
        }
        state.retired = kept;

        let mut upload = PreKeyUpload::default();
        let mut rng = rand::rng();
        let due = |k: Option<(u32, u64)>| {
            k.is_none_or(|(_, at)| at.saturating_add(PREKEY_ROTATION_SECS) <= now_s)
        };
        if due(state.signed) {
            let spk = state
                .keys
                .generate_signed_prekey(&mut rng, &self.identity, now_s);
            if let Some((old, _)) = state.signed {
                state.retired.push(RetiredKey {
                    kind: RetiredKind::Signed,
                    id: old,
                    retired_at: now_s,
                });
            }
            state.signed = Some((spk.id, now_s));
            upload.signed_prekey = Some(spk);
        }
        if due(state.last_resort) {
            let lr = state.keys.generate_kem_prekeys(
                &mut rng,
                &self.identity,
                KemPreKeyKind::LastResort,
                1,
                now_s,
            );
            if let Some(k) = lr.into_iter().next() {
                if let Some((old, _)) = state.last_resort {
                    state.retired.push(RetiredKey {
                        kind: RetiredKind::Kem,
                        id: old,
                        retired_at: now_s,
                    });
                }
                state.last_resort = Some((k.id, now_s));
                upload.kem.push(k);
            }
        }
        let (one_time, kem) = counts.unwrap_or((0, 0));
        if one_time < ONE_TIME_PREKEY_LOW {
            let n = ONE_TIME_PREKEY_TARGET.saturating_sub(one_time) as usize;
            upload.one_time = state
                .keys
                .generate_one_time_prekeys(&mut rng, n.min(MAX_ONE_TIME_PER_UPLOAD));
        }
        if kem < KEM_PREKEY_LOW {
            let n = (KEM_PREKEY_TARGET.saturating_sub(kem) as usize)
                .min(MAX_KEM_PER_UPLOAD.saturating_sub(upload.kem.len()));
            upload.kem.extend(state.keys.generate_kem_prekeys(
                &mut rng,
                &self.identity,
                KemPreKeyKind::OneTime,
                n,
                now_s,
            ));
        }
        let result = if upload.signed_prekey.is_none()
            && upload.one_time.is_empty()
            && upload.kem.is_empty()
        {
            None
        } else {
            state.pending = Some(upload.clone());
            changed = true;
            Some(upload)
        };
        if changed {
            let mut batch = Batch::new();
            self.store.put_prekeys(&mut batch, &state);
            self.store.commit(batch)?;
        }
        Ok(result)
    }

    /// The relay stored `upload` (or rejected it for good): forget it as pending.
    pub(crate) fn prekeys_uploaded(&self, upload: &PreKeyUpload) -> Result<(), ClientError> {
        let _g = self.lock()?;
        let Some(mut state) = self.store.prekeys()? else {
            return Ok(());
        };
        if state.pending.as_ref() == Some(upload) {
            state.pending = None;
            let mut batch = Batch::new();
            self.store.put_prekeys(&mut batch, &state);
            self.store.commit(batch)?;
        }
        Ok(())
    }

    /// For tests: the prekey state.
    #[cfg(test)]
    pub(crate) fn prekey_state(&self) -> Result<Option<crate::store::PreKeyState>, ClientError> {
        Ok(self.store.prekeys()?)
    }
}
