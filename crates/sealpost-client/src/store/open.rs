//! Opening and unlocking a store (spec/client-store.md section 2): the store secret, the
//! key derivation (Argon2id for a passphrase) and the key check. Opening is async and runs the
//! derivation and the database's open on a blocking thread; the `_blocking` variants are for
//! code outside an async runtime.

use super::crypt::{ARGON2_SALT_LEN, DB_SALT_LEN, KEY_CHECK_PLAINTEXT, StoreKeys};
use super::{
    ClientStore, Inner, MemoryClientStore, STORE_FORMAT_VERSION, SqliteClientStore, Store,
    StoreArgon2Params, StoreKey, Table, row_ad,
};
use crate::error::StoreError;
use sealpost_crypto::Zeroizing;
use sealpost_wire::{Reader, Writer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

const META_FORMAT: &str = "format";
const META_SALT: &str = "salt";
const META_KDF: &str = "kdf";
const META_CHECK: &str = "check";
const KDF_RAW: u8 = 0;
const KDF_ARGON2ID: u8 = 1;

/// How to unlock a store.
pub enum StoreSecret {
    /// A 32-byte key from the platform keystore.
    Key(StoreKey),
    /// A passphrase, stretched with Argon2id. `params` apply when the store is created;
    /// an existing store uses the parameters recorded in it.
    Passphrase {
        /// The passphrase (zeroized on drop).
        passphrase: Zeroizing<String>,
        /// Cost parameters for a new store.
        params: StoreArgon2Params,
    },
}

impl StoreSecret {
    /// A passphrase with the default Argon2id parameters.
    pub fn passphrase(passphrase: impl Into<String>) -> Self {
        Self::Passphrase {
            passphrase: Zeroizing::new(passphrase.into()),
            params: StoreArgon2Params::default(),
        }
    }
}

impl std::fmt::Debug for StoreSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(_) => f.write_str("StoreSecret::Key(..)"),
            Self::Passphrase { params, .. } => f
                .debug_struct("StoreSecret::Passphrase")
                .field("params", params)
                .finish_non_exhaustive(),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and unlocks it with `secret`.
    ///
    /// The store is locked while open: a second open, from this process or another, fails
    /// at once with [`StoreError::InUse`] (spec/client-store.md section 4.2). The key
    /// derivation (Argon2id for a passphrase: 64 MiB and 3 passes by default, about
    /// 0.1–0.5 s) and the database's open run on a blocking thread
    /// (`tokio::task::spawn_blocking`), so this never blocks the async runtime. Fails with
    /// [`StoreError::WrongKey`] if `secret` does not unlock an existing store.
    ///
    /// Must be called within a tokio runtime. Whether the store already holds a registered
    /// device: [`Store::has_account`].
    pub async fn open_sqlite(
        path: impl AsRef<Path>,
        secret: StoreSecret,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        off_runtime(move || Self::open_sqlite_blocking(path, secret)).await
    }

    /// Opens a store on `backend` (see [`Store::open_sqlite`]), creating its metadata
    /// (random salt, key check) on first use. The key derivation runs on a blocking thread.
    pub async fn open(backend: impl ClientStore, secret: StoreSecret) -> Result<Self, StoreError> {
        off_runtime(move || Self::open_blocking(backend, secret)).await
    }

    /// [`Store::open_sqlite`] on the calling thread, which it blocks for the key derivation
    /// and the database's open: for code outside an async runtime (or a raw
    /// [`StoreSecret::Key`], which needs no derivation). In async code use
    /// [`Store::open_sqlite`].
    pub fn open_sqlite_blocking(
        path: impl AsRef<Path>,
        secret: StoreSecret,
    ) -> Result<Self, StoreError> {
        Self::open_blocking(SqliteClientStore::open(path)?, secret)
    }

    /// [`Store::open`] on the calling thread, which it blocks for the key derivation: for
    /// code outside an async runtime. In async code use [`Store::open`].
    pub fn open_blocking(
        backend: impl ClientStore,
        secret: StoreSecret,
    ) -> Result<Self, StoreError> {
        let backend: Box<dyn ClientStore> = Box::new(backend);
        let keys = match backend.meta(META_FORMAT)? {
            None => Self::create(backend.as_ref(), &secret)?,
            Some(_) => Self::unlock(backend.as_ref(), &secret)?,
        };
        let store = Self {
            inner: Arc::new(Inner {
                backend,
                keys,
                seqs: Mutex::new(HashMap::new()),
                identity_keys: Mutex::new(HashMap::new()),
                verified_lists: Mutex::new(HashMap::new()),
            }),
        };
        for t in [Table::Sessions, Table::History, Table::Outbox] {
            let max = store.backend().max_seq(t)?;
            store
                .seqs()?
                .insert(t, Arc::new(AtomicU64::new(max.saturating_add(1))));
        }
        Ok(store)
    }

    /// Whether the store holds a registered device: `true` means [`crate::Client::open`]
    /// starts a client on it; `false` (a new store, or a registration that never completed)
    /// means register first with [`crate::Client::request_code`] and
    /// [`crate::Client::register`], which also finishes an interrupted registration. Reads
    /// on a blocking thread.
    pub async fn has_account(&self) -> Result<bool, StoreError> {
        let store = self.clone();
        off_runtime(move || Ok(store.account()?.is_some_and(|a| a.device.is_some()))).await
    }

    /// A volatile in-memory store under `key` (tests, ephemeral clients). Takes a key, not
    /// a passphrase: there is nothing at rest to protect, and no key derivation to block on.
    pub fn in_memory(key: StoreKey) -> Result<Self, StoreError> {
        Self::open_blocking(MemoryClientStore::new(), StoreSecret::Key(key))
    }

    fn check_record(keys: &StoreKeys) -> Vec<u8> {
        keys.seal(
            "meta",
            &row_ad(META_CHECK.as_bytes(), &[], 0),
            KEY_CHECK_PLAINTEXT,
        )
    }

    fn create(backend: &dyn ClientStore, secret: &StoreSecret) -> Result<StoreKeys, StoreError> {
        let mut rng = rand::rng();
        let db_salt = sealpost_crypto::random_array::<DB_SALT_LEN, _>(&mut rng);
        let (key, kdf) = match secret {
            StoreSecret::Key(k) => (k.clone(), vec![KDF_RAW]),
            StoreSecret::Passphrase { passphrase, params } => {
                let salt = sealpost_crypto::random_array::<ARGON2_SALT_LEN, _>(&mut rng);
                let key = StoreKey::from_passphrase(passphrase.as_bytes(), &salt, params)?;
                let mut w = Writer::with_capacity(29);
                w.u8(KDF_ARGON2ID)
                    .bytes(salt.as_slice())
                    .u32(params.memory_kib)
                    .u32(params.iterations)
                    .u32(params.parallelism);
                (key, w.into_bytes())
            }
        };
        let keys = StoreKeys::derive(&key, &db_salt)?;
        let created = backend.init_meta(
            META_FORMAT,
            &[
                (META_FORMAT, STORE_FORMAT_VERSION.to_be_bytes().to_vec()),
                (META_SALT, db_salt.to_vec()),
                (META_KDF, kdf),
                (META_CHECK, Self::check_record(&keys)),
            ],
        )?;
        if created {
            Ok(keys)
        } else {
            // Someone else initialized it concurrently.
            Self::unlock(backend, secret)
        }
    }

    fn unlock(backend: &dyn ClientStore, secret: &StoreSecret) -> Result<StoreKeys, StoreError> {
        let meta = |name: &'static str| {
            backend
                .meta(name)?
                .ok_or(StoreError::Inconsistent("missing store metadata"))
        };
        let format = meta(META_FORMAT)?;
        let format = u32::from_be_bytes(
            format
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Inconsistent("store format entry"))?,
        );
        if format != STORE_FORMAT_VERSION {
            return Err(StoreError::UnsupportedFormat(format));
        }
        let db_salt: [u8; DB_SALT_LEN] = meta(META_SALT)?
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Inconsistent("store salt entry"))?;
        let kdf = meta(META_KDF)?;
        let mut r = Reader::new(&kdf);
        let bad_kdf = |_| StoreError::Inconsistent("store kdf entry");
        let key = match (r.u8().map_err(bad_kdf)?, secret) {
            (KDF_RAW, StoreSecret::Key(k)) => k.clone(),
            (KDF_ARGON2ID, StoreSecret::Passphrase { passphrase, .. }) => {
                let salt: [u8; ARGON2_SALT_LEN] = r.array().map_err(bad_kdf)?;
                let params = StoreArgon2Params {
                    memory_kib: r.u32().map_err(bad_kdf)?,
                    iterations: r.u32().map_err(bad_kdf)?,
                    parallelism: r.u32().map_err(bad_kdf)?,
                };
                StoreKey::from_passphrase(passphrase.as_bytes(), &salt, &params)?
            }
            (KDF_RAW | KDF_ARGON2ID, _) => return Err(StoreError::WrongKey),
            _ => return Err(StoreError::Inconsistent("unknown store kdf")),
        };
        r.finish().map_err(bad_kdf)?;
        let keys = StoreKeys::derive(&key, &db_salt)?;
        let check = meta(META_CHECK)?;
        let opened = keys
            .open("meta", &row_ad(META_CHECK.as_bytes(), &[], 0), &check)
            .map_err(|_| StoreError::WrongKey)?;
        if opened.as_slice() != KEY_CHECK_PLAINTEXT {
            return Err(StoreError::WrongKey);
        }
        Ok(keys)
    }
}

/// Runs `f` on a blocking thread; a panic there resumes on the caller.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Cancelled),
    }
}
