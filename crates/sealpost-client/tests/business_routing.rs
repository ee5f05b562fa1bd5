//! A business's profile, its verification and its default route, end to end over real QUIC
//! with real SQLite stores (spec/business.md sections 3, 4 and 7): the owner publishes the
//! profile, adds a verifier's statement and routes new conversations to the bot and one
//! agent; the customer sees the profile as verified by the verifier its configuration
//! trusts, and its messages reach the routed devices and the owner only; rerouting moves the
//! next message to another agent; renaming the business drops the verification.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    AccountKind, BusinessProfileFields, ClientError, ClientEvent, DeviceId, DeviceRole,
};
use sealpost_crypto::ed25519::SigningKey;
use std::sync::Arc;
use std::time::Duration;

const SHOP: &str = "+15550006001";
const CUSTOMER: &str = "+15550006002";

fn fields(name: &str) -> BusinessProfileFields {
    BusinessProfileFields {
        name: name.into(),
        category: "Bicycle shop".into(),
        description: "Repairs while you wait.\nRentals by the day.".into(),
        address: "12 Harbour Street\n4051 Basel".into(),
        website: "https://velo-lina.example".into(),
        hours: "Mon-Fri 09:00-18:30".into(),
        reply_within: 900,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reaches_only_the_routed_devices_of_a_verified_business() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let verifier = SigningKey::from_seed(&[0x5A; 32]);
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Owner");
    // The customer trusts one verifier, and fetches the shop's list (and with it the
    // profile and route) before every message it sends.
    let customer_config = config
        .clone()
        .with_device_list_refresh(Duration::ZERO)
        .with_trusted_verifier("Basel Registry", verifier.verifying_key().to_bytes());
    let (shop, s_rx) = register(&shop_config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (customer, c_rx) = register(
        &customer_config,
        &codes,
        CUSTOMER,
        open_store(dir.path(), "customer"),
    )
    .await;
    let (s_seen, c_seen) = (Collector::default(), Collector::default());
    s_seen.spawn(s_rx);
    c_seen.spawn(c_rx);
    // The business's devices read their own list before every copy they send, so each
    // knows every device of the shop (and the rule that skips some is what is checked).
    let device_config = config.clone().with_device_list_refresh(Duration::ZERO);
    let link = |name: &'static str, role| {
        let (dir, config, shop) = (dir.path(), &device_config, &shop);
        async move { link_as(dir, name, config, shop, name, role).await }
    };
    let (bot, bot_seen) = link("Order bot", DeviceRole::Bot).await;
    let (lina, lina_seen) = link("Lina, support", DeviceRole::Agent).await;
    let (omar, omar_seen) = link("Omar, support", DeviceRole::Agent).await;
    let (bot_id, lina_id, omar_id) = (
        bot.address().device,
        lina.address().device,
        omar.address().device,
    );

    // No profile yet; a customer cannot publish one.
    assert_eq!(customer.business_profile(&acct(SHOP)).await.unwrap(), None);
    assert!(matches!(
        customer.publish_business_profile(fields("Mine")).await,
        Err(ClientError::NotBusiness)
    ));
    // The owner publishes the profile; a verifier signs the name for the account key it
    // checked out of band; the owner adds the statement; new conversations go to the bot
    // and Lina.
    assert_eq!(
        shop.publish_business_profile(fields("Velo Lina"))
            .await
            .unwrap(),
        1
    );
    let unverified = customer
        .business_profile(&acct(SHOP))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unverified.fields, fields("Velo Lina"));
    assert!(unverified.verified_by.is_empty());
    assert!(unverified.routed_to.is_empty());
    let key = sealpost_devices::AccountKey::from_bytes(&unverified.account_key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let statement = sealpost_devices::sign_business_verification(
        &verifier,
        &acct(SHOP),
        &key,
        "Velo Lina",
        now - 60_000,
        now + 86_400_000,
    )
    .unwrap()
    .encode()
    .unwrap();
    // Not a statement of this business: refused before anything is sent.
    let other = sealpost_devices::sign_business_verification(
        &verifier,
        &acct(SHOP),
        &key,
        "Velo Lena",
        now - 60_000,
        now + 86_400_000,
    )
    .unwrap()
    .encode()
    .unwrap();
    assert!(matches!(
        shop.add_business_verification(&other).await,
        Err(ClientError::VerificationRefused(_))
    ));
    shop.add_business_verification(&statement).await.unwrap();
    assert!(matches!(
        shop.set_default_route(&[DeviceId(99)]).await,
        Err(ClientError::UnknownDevice(DeviceId(99)))
    ));
    assert!(matches!(
        lina.set_default_route(&[lina_id]).await,
        Err(ClientError::NotKeyHolder)
    ));
    assert_eq!(shop.set_default_route(&[bot_id, lina_id]).await.unwrap(), 1);
    let profile = customer
        .business_profile(&acct(SHOP))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.verified_by, vec!["Basel Registry".to_owned()]);
    assert_eq!(profile.routed_to, vec![bot_id, lina_id]);
    assert_eq!(profile.version, 1);

    // Two messages: the owner, the bot and Lina get them; Omar is not routed.
    for text in ["Is my bike ready?", "Order 1042"] {
        let id = customer.send_text(&acct(SHOP), text).await.unwrap();
        delivered(&c_seen, id).await;
    }
    for (who, seen) in [("owner", &s_seen), ("bot", &bot_seen), ("Lina", &lina_seen)] {
        seen.wait(who, 30, |c| c.count() == 2).await;
        assert_eq!(
            seen.texts(),
            vec!["Is my bike ready?", "Order 1042"],
            "{who}"
        );
    }
    // Lina answers: the customer sees her name and role; her copy goes to the routed
    // devices and the owner (the bot and the owner report it), not to Omar.
    let answer = lina
        .send_text(&acct(CUSTOMER), "Your bike is ready")
        .await
        .unwrap();
    c_seen.wait("answer", 30, |c| c.count() == 1).await;
    let author = c_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message { author, .. } => author.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(author.name, "Lina, support");
    assert_eq!(author.role, DeviceRole::Agent);
    let copied = |c: &Collector| {
        c.count_events(|e| {
            matches!(e, ClientEvent::SentByOtherDevice { message_id, .. } if *message_id == answer)
        })
    };
    s_seen.wait("owner's copy", 30, |c| copied(c) == 1).await;
    bot_seen.wait("bot's copy", 30, |c| copied(c) == 1).await;

    // The owner moves new conversations to Omar; the customer's next message reaches him.
    // It is the first message Omar ever gets: a mailbox delivers in order, so had either
    // message before been addressed to him, he would have got it first.
    assert_eq!(shop.set_default_route(&[omar_id]).await.unwrap(), 2);
    let id = customer
        .send_text(&acct(SHOP), "Anyone there?")
        .await
        .unwrap();
    delivered(&c_seen, id).await;
    omar_seen.wait("Omar", 30, |c| c.count() == 1).await;
    assert_eq!(omar_seen.texts(), vec!["Anyone there?"]);
    // Lina's copy was committed before this message, so Omar would have had it first.
    assert_eq!(copied(&omar_seen), 0);
    let after = customer.send_text(&acct(SHOP), "Thanks").await.unwrap();
    delivered(&c_seen, after).await;
    omar_seen.wait("Omar", 30, |c| c.count() == 2).await;
    // Routed back to the bot and Lina: the next message is the third each of them gets,
    // so neither got the two sent while Omar had the route (mailboxes deliver in order).
    assert_eq!(shop.set_default_route(&[bot_id, lina_id]).await.unwrap(), 3);
    let id = customer.send_text(&acct(SHOP), "Back again").await.unwrap();
    delivered(&c_seen, id).await;
    for (who, seen) in [("bot", &bot_seen), ("Lina", &lina_seen)] {
        seen.wait(who, 30, |c| c.count() == 3).await;
        assert_eq!(
            seen.texts(),
            vec!["Is my bike ready?", "Order 1042", "Back again"],
            "{who}"
        );
    }
    s_seen.wait("owner", 30, |c| c.count() == 5).await;

    // Renamed, the business loses the mark until a verifier signs the new name; the route
    // stays.
    assert_eq!(
        shop.publish_business_profile(fields("Velo Lina & Co"))
            .await
            .unwrap(),
        2
    );
    let renamed = customer
        .business_profile(&acct(SHOP))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.fields.name, "Velo Lina & Co");
    assert!(renamed.verified_by.is_empty());
    assert_eq!(renamed.routed_to, vec![bot_id, lina_id]);

    // A device linked now gets the business's contacts, not its conversations
    // (spec/business.md 7.4): the history bundle has no messages.
    let (nia, nia_seen) = link("Nia, support", DeviceRole::Agent).await;
    nia_seen
        .wait("Nia's history", 30, |c| {
            c.count_events(|e| matches!(e, ClientEvent::HistoryImported { last: true, .. })) == 1
        })
        .await;
    let imported: Vec<(u32, u32)> = nia_seen
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::HistoryImported {
                contacts, messages, ..
            } => Some((*contacts, *messages)),
            _ => None,
        })
        .collect();
    assert_eq!(imported.iter().map(|(_, m)| m).sum::<u32>(), 0);
    assert!(imported.iter().map(|(c, _)| c).sum::<u32>() >= 1);
    assert!(nia.history(&acct(CUSTOMER), 100).await.unwrap().is_empty());
    // Five messages from the customer and Lina's answer (its copy).
    assert_eq!(shop.history(&acct(CUSTOMER), 100).await.unwrap().len(), 6);
}
