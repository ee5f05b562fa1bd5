//! Runnable examples of Sealpost; see `examples/`. This library holds what they share.

use sealpost_relay::{CodeSender, VerificationCode};
use sealpost_wire::AccountId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Stands in for the SMS gateway: keeps the last verification code sent to each number.
#[derive(Debug, Default)]
pub struct Phones(Mutex<HashMap<String, String>>);

impl CodeSender for Phones {
    fn send_code(&self, account: &AccountId, code: &VerificationCode) {
        if let Ok(mut inbox) = self.0.lock() {
            inbox.insert(account.as_str().to_owned(), code.as_str().to_owned());
        }
    }
}

impl Phones {
    /// Takes the code last sent to `phone`.
    pub fn read_code(&self, phone: &str) -> anyhow::Result<String> {
        self.0
            .lock()
            .ok()
            .and_then(|mut inbox| inbox.remove(phone))
            .ok_or_else(|| anyhow::anyhow!("no verification code arrived"))
    }
}
