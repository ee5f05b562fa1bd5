//! Business accounts over real QUIC with real SQLite stores (spec/devices.md 8.9): a business
//! registers with its device as `owner`, links an agent and a bot by role, and a customer
//! sees on every message which device of the business answered, by the name and role the
//! business's signed list gives it; renaming a device reaches the customer as a
//! `DevicesChanged` and on later messages; roles of the wrong family are refused before
//! anything is sent; an owner recovered with the PIN stays an owner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::{
    AccountKind, Client, ClientError, ClientEvent, DeviceId, DeviceInfo, DeviceRole, LinkFailure,
    OWNER_DEVICE_NAME,
};
use std::sync::Arc;
use std::time::Duration;

const SHOP: &str = "+15550003001";
const CUSTOMER: &str = "+15550003002";
const OTHER_SHOP: &str = "+15550003003";

/// The author of the message with `text` that `seen` got, once it arrived.
async fn author_of(seen: &Collector, text: &str) -> Option<DeviceInfo> {
    seen.wait(text, 30, |c| c.texts().iter().any(|t| t == text))
        .await;
    let events = seen.events.lock().unwrap();
    events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message { author, body, .. } if body.as_text() == Some(text) => {
                Some(author.clone())
            }
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sees_which_agent_or_bot_of_a_business_answered() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Shop owner");
    // The customer fetches the shop's list before every message it sends.
    let customer_config = config.clone().with_device_list_refresh(Duration::ZERO);
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

    // Registered as the owner of a business list, under the chosen name.
    assert_eq!(
        shop.own_devices().await.unwrap(),
        vec![info(1, "Shop owner", DeviceRole::Owner)]
    );
    // The customer writes first (and pins the shop's list).
    customer
        .send_text(&acct(SHOP), "Where is order 1042?")
        .await
        .unwrap();
    s_seen.wait("question", 30, |c| c.count() == 1).await;
    // The shop sees the customer's personal key holder as the author.
    assert_eq!(
        author_of(&s_seen, "Where is order 1042?").await,
        Some(info(
            1,
            sealpost_client::PRIMARY_DEVICE_NAME,
            DeviceRole::Primary
        ))
    );

    // The owner links an agent and a bot by role.
    let (agent, _a_seen) = link_as(
        dir.path(),
        "agent",
        &config,
        &shop,
        "Lina, support",
        DeviceRole::Agent,
    )
    .await;
    let (bot, _b_seen) = link_as(
        dir.path(),
        "bot",
        &config,
        &shop,
        "Order bot",
        DeviceRole::Bot,
    )
    .await;
    assert_eq!(
        shop.own_devices().await.unwrap(),
        vec![
            info(1, "Shop owner", DeviceRole::Owner),
            info(2, "Lina, support", DeviceRole::Agent),
            info(3, "Order bot", DeviceRole::Bot),
        ]
    );

    // A role of the other family, or one that holds the account key, is refused before
    // anything is sent: the invitation stays unanswered and the list unchanged.
    let pending = Client::link(open_store(dir.path(), "stranger"), config.clone())
        .await
        .unwrap();
    let invitation = pending.invitation_text();
    for role in [DeviceRole::Linked, DeviceRole::Owner, DeviceRole::Primary] {
        assert_eq!(
            shop.link_device_as(&invitation, "Intruder", role).await,
            Err(ClientError::Link(LinkFailure::RoleNotAllowed { role })),
            "{role:?}"
        );
    }
    // A personal account cannot link an agent.
    assert_eq!(
        customer
            .link_device_as(&invitation, "Desk", DeviceRole::Agent)
            .await,
        Err(ClientError::Link(LinkFailure::RoleNotAllowed {
            role: DeviceRole::Agent
        }))
    );
    assert_eq!(shop.own_devices().await.unwrap().len(), 3);
    drop(pending);

    // Each device of the shop answers; the customer knows who.
    shop.send_text(&acct(CUSTOMER), "We are looking into it.")
        .await
        .unwrap();
    agent
        .send_text(&acct(CUSTOMER), "Hi, Lina here.")
        .await
        .unwrap();
    bot.send_text(&acct(CUSTOMER), "Order 1042 has shipped.")
        .await
        .unwrap();
    assert_eq!(
        author_of(&c_seen, "We are looking into it.").await,
        Some(info(1, "Shop owner", DeviceRole::Owner))
    );
    assert_eq!(
        author_of(&c_seen, "Hi, Lina here.").await,
        Some(info(2, "Lina, support", DeviceRole::Agent))
    );
    assert_eq!(
        author_of(&c_seen, "Order 1042 has shipped.").await,
        Some(info(3, "Order bot", DeviceRole::Bot))
    );

    // Changing a role to one that holds the account key, the owner's role, or an unknown
    // device, is refused; renaming the agent publishes the next list.
    assert_eq!(
        shop.update_device(DeviceId(3), None, Some(DeviceRole::Owner))
            .await,
        Err(ClientError::Link(LinkFailure::RoleNotAllowed {
            role: DeviceRole::Owner
        }))
    );
    assert_eq!(
        shop.update_device(DeviceId(1), None, Some(DeviceRole::Admin))
            .await,
        Err(ClientError::Link(LinkFailure::RoleNotAllowed {
            role: DeviceRole::Admin
        }))
    );
    assert_eq!(
        shop.update_device(DeviceId(9), Some("Nobody"), None).await,
        Err(ClientError::Link(LinkFailure::UnknownDevice {
            device: DeviceId(9)
        }))
    );
    assert_eq!(
        shop.update_device(DeviceId(2), Some(""), None).await,
        Err(ClientError::Link(LinkFailure::InvalidName))
    );
    assert_eq!(
        agent
            .update_device(DeviceId(2), Some("Lina, boss"), None)
            .await,
        Err(ClientError::NotKeyHolder)
    );
    assert_eq!(
        shop.update_device(DeviceId(2), Some("Lina, sales"), None)
            .await
            .unwrap(),
        info(2, "Lina, sales", DeviceRole::Agent)
    );
    assert_eq!(
        shop.own_devices().await.unwrap()[1],
        info(2, "Lina, sales", DeviceRole::Agent)
    );

    // The customer's next message fetches the list: one DevicesChanged with the new name.
    customer.send_text(&acct(SHOP), "Thanks!").await.unwrap();
    c_seen
        .wait("the rename", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::DevicesChanged { account, added, removed, changed }
                    if *account == acct(SHOP) && added.is_empty() && removed.is_empty()
                        && *changed == vec![info(2, "Lina, sales", DeviceRole::Agent)])
            }) == 1
        })
        .await;
    // Later messages carry the new name.
    agent
        .send_text(&acct(CUSTOMER), "You're welcome.")
        .await
        .unwrap();
    assert_eq!(
        author_of(&c_seen, "You're welcome.").await,
        Some(info(2, "Lina, sales", DeviceRole::Agent))
    );
    // A device renamed while the customer only receives: the customer's list is older than
    // its refresh interval (zero here), so the next message from the shop fetches it first
    // and already carries the new name and role.
    assert_eq!(
        shop.update_device(DeviceId(3), Some("Shipping"), Some(DeviceRole::Admin))
            .await
            .unwrap(),
        info(3, "Shipping", DeviceRole::Admin)
    );
    bot.send_text(&acct(CUSTOMER), "Out for delivery.")
        .await
        .unwrap();
    assert_eq!(
        author_of(&c_seen, "Out for delivery.").await,
        Some(info(3, "Shipping", DeviceRole::Admin))
    );
    assert_eq!(
        c_seen.count_events(|e| matches!(e, ClientEvent::DevicesChanged { changed, .. }
            if *changed == vec![info(3, "Shipping", DeviceRole::Admin)])),
        1
    );

    // The history keeps each message's author as it was when the message arrived; the
    // customer's own messages have none.
    let authors: Vec<(String, Option<DeviceInfo>)> = customer
        .history(&acct(SHOP), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.body.as_text().unwrap().to_owned(), h.author))
        .collect();
    for (text, author) in [
        ("Where is order 1042?", None),
        (
            "We are looking into it.",
            Some(info(1, "Shop owner", DeviceRole::Owner)),
        ),
        (
            "Hi, Lina here.",
            Some(info(2, "Lina, support", DeviceRole::Agent)),
        ),
        (
            "Order 1042 has shipped.",
            Some(info(3, "Order bot", DeviceRole::Bot)),
        ),
        ("Thanks!", None),
        (
            "You're welcome.",
            Some(info(2, "Lina, sales", DeviceRole::Agent)),
        ),
        (
            "Out for delivery.",
            Some(info(3, "Shipping", DeviceRole::Admin)),
        ),
    ] {
        assert!(
            authors.contains(&(text.to_owned(), author.clone())),
            "{text}: {authors:?}"
        );
    }
    assert_eq!(authors.len(), 7);
    // ... and it survives reopening the store.
    customer.shutdown().await;
    drop(customer);
    let (customer, _c_seen) = open_connected(dir.path(), "customer", &customer_config).await;
    let reopened: Vec<Option<DeviceInfo>> = customer
        .history(&acct(SHOP), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.author)
        .collect();
    assert_eq!(
        reopened,
        authors.into_iter().map(|(_, a)| a).collect::<Vec<_>>()
    );
    // No safety-number warning throughout: the account key never changed, and each new
    // device of the shop came with the signed list that names it.
    assert_eq!(
        c_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. } | ClientEvent::VerifiedIdentityChanged { .. }
        )),
        0
    );

    bot.shutdown().await;
    agent.shutdown().await;
    shop.shutdown().await;
    customer.shutdown().await;
    relay.shutdown().await;
}

/// A business registered without a name gets the default owner name; an invalid name is
/// refused before anything is sent (the code stays usable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_owner_name_defaults_and_an_invalid_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, bulk_limits()).await;
    let config = client_config(relay.local_addr(), relay.spki_pin())
        .with_account_kind(AccountKind::Business);
    Client::request_code(&config, &acct(OTHER_SHOP))
        .await
        .unwrap();
    let code = codes.take(OTHER_SHOP);
    let bad = config.clone().with_device_name("tab\tbed");
    assert_eq!(
        Client::register(
            open_store(dir.path(), "other"),
            bad,
            acct(OTHER_SHOP),
            &code
        )
        .await
        .map(|_| ()),
        Err(ClientError::Link(LinkFailure::InvalidName))
    );
    let (shop, _rx) = Client::register(
        open_store(dir.path(), "other"),
        config,
        acct(OTHER_SHOP),
        &code,
    )
    .await
    .unwrap();
    assert_eq!(
        shop.own_devices().await.unwrap(),
        vec![info(1, OWNER_DEVICE_NAME, DeviceRole::Owner)]
    );
    shop.shutdown().await;
    relay.shutdown().await;
}

/// A business owner lost with the PIN set: the new device restores the account key and
/// replaces the owner as an owner (the family of the stored list, though this device's
/// configuration is the personal default), under the business default name; the agent stays
/// listed, and the customer sees one device change and the new owner as the author.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_owner_stays_an_owner() {
    const PIN: &str = "482915";
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let limits = sealpost_relay::Limits {
        vault_requests_per_account: 1000,
        ..bulk_limits()
    };
    let relay = start_relay(&dir.path().join("relay"), any_port(), &codes, limits).await;
    let config = client_config(relay.local_addr(), relay.spki_pin())
        .with_pin_params(sealpost_client::PinArgon2Params::testing());
    let shop_config = config
        .clone()
        .with_account_kind(AccountKind::Business)
        .with_device_name("Shop owner");
    let customer_config = config.clone().with_device_list_refresh(Duration::ZERO);
    let (shop, _s_rx) = register(&shop_config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let (customer, c_rx) = register(
        &customer_config,
        &codes,
        CUSTOMER,
        open_store(dir.path(), "customer"),
    )
    .await;
    let c_seen = Collector::default();
    c_seen.spawn(c_rx);
    shop.set_pin(PIN).await.unwrap();
    let (agent, _a_seen) = link_as(
        dir.path(),
        "agent",
        &config,
        &shop,
        "Lina, support",
        DeviceRole::Agent,
    )
    .await;
    customer.send_text(&acct(SHOP), "Hello?").await.unwrap();
    agent.send_text(&acct(CUSTOMER), "Hi!").await.unwrap();
    assert_eq!(
        author_of(&c_seen, "Hi!").await,
        Some(info(2, "Lina, support", DeviceRole::Agent))
    );

    // The owner's device is lost; a new one registers with the PIN and the default
    // (personal, unnamed) configuration.
    shop.shutdown().await;
    Client::request_code(&config, &acct(SHOP)).await.unwrap();
    let code = codes.take(SHOP);
    let (owner, _o_rx) = Client::register_with_pin(
        open_store(dir.path(), "shop-new"),
        config.clone(),
        acct(SHOP),
        &code,
        PIN,
    )
    .await
    .unwrap();
    assert_eq!(owner.address().device, DeviceId(3));
    assert_eq!(
        owner.own_devices().await.unwrap(),
        vec![
            info(2, "Lina, support", DeviceRole::Agent),
            info(3, OWNER_DEVICE_NAME, DeviceRole::Owner),
        ]
    );

    // The customer's next message fetches the list: the owner was replaced, nothing else.
    customer
        .send_text(&acct(SHOP), "Still there?")
        .await
        .unwrap();
    c_seen
        .wait("the new owner", 30, |c| {
            c.count_events(|e| {
                matches!(e, ClientEvent::DevicesChanged { added, removed, changed, .. }
                    if *added == vec![info(3, OWNER_DEVICE_NAME, DeviceRole::Owner)]
                        && *removed == vec![info(1, "Shop owner", DeviceRole::Owner)]
                        && changed.is_empty())
            }) == 1
        })
        .await;
    owner
        .send_text(&acct(CUSTOMER), "Yes, new phone.")
        .await
        .unwrap();
    assert_eq!(
        author_of(&c_seen, "Yes, new phone.").await,
        Some(info(3, OWNER_DEVICE_NAME, DeviceRole::Owner))
    );
    assert_eq!(
        c_seen.count_events(|e| matches!(
            e,
            ClientEvent::SafetyNumberChanged { .. } | ClientEvent::VerifiedIdentityChanged { .. }
        )),
        0
    );

    agent.shutdown().await;
    owner.shutdown().await;
    customer.shutdown().await;
    relay.shutdown().await;
}
