//! `Vary`: each variant of a response is its own entry.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness};
use uip_cache_testkit::Reply;

use crate::ITEMS;

for_every_adapter_and_store!(vary,);

async fn vary(a: Adapter, b: Backend) {
    let Some(h) = Harness::new(a, b, ITEMS, |s, _| {
        Reply::ok(&format!(
            "hello {}",
            s.header("accept-language").unwrap_or("-")
        ))
        .header("vary", "Accept-Language")
    })
    .await
    else {
        return;
    };
    for lang in ["en", "fr"] {
        let got = h.send("GET", "/items", &[("accept-language", lang)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("MISS", Bytes::from(format!("hello {lang}")))
        );
    }
    for lang in ["en", "fr"] {
        let got = h.send("GET", "/items", &[("accept-language", lang)]).await;
        assert_eq!(
            (got.x_cache(), got.body.clone()),
            ("HIT", Bytes::from(format!("hello {lang}")))
        );
    }
    assert_eq!(h.calls(), 2);
}
