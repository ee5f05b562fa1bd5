#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::collections::BTreeSet;

/// Every route the router serves is in `openapi.json`, and every path and method there is
/// served.
#[test]
fn openapi_describes_exactly_the_served_routes() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (key, _) in item.as_object().unwrap() {
            if methods.contains(&key.as_str()) {
                described.insert((key.clone(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(
        served.len(),
        served_routes().len(),
        "a route is added twice"
    );
    let undocumented: Vec<_> = served.difference(&described).collect();
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json but not served: {unserved:?}"
    );
    // Every schema reference resolves.
    let text = OPENAPI;
    for part in text.split("\"$ref\": \"#/components/").skip(1) {
        let reference = part.split('"').next().unwrap();
        let mut node = &doc["components"];
        for segment in reference.split('/') {
            node = &node[segment];
        }
        assert!(!node.is_null(), "unresolved $ref {reference}");
    }
}

#[test]
fn errors_are_typed_json_and_401_asks_for_a_bearer_token() {
    let response = ApiError::unauthorized().into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        rejection(StatusCode::PAYLOAD_TOO_LARGE, "JSON body").status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        rejection(StatusCode::UNPROCESSABLE_ENTITY, "JSON body").status,
        StatusCode::BAD_REQUEST
    );
}
