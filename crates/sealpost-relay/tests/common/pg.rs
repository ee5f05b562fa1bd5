//! A fresh PostgreSQL schema per test, so tests share one server in parallel.

/// A fresh schema on the server (dropped by [`Schema::drop_now`]) and the relay store URL
/// that selects it.
pub struct Schema {
    admin: tokio_postgres::Client,
    name: String,
    pub url: String,
}

impl Schema {
    /// Creates `<prefix>_<random>` on the server at `server`.
    pub async fn create(server: &str, prefix: &str) -> Self {
        let (admin, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .expect("the PostgreSQL test server is reachable");
        tokio::spawn(conn);
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Self { admin, name, url }
    }

    pub async fn drop_now(self) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}
