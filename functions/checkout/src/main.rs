//! Lambda `checkout`: the HTTP API's checkout routes behind API Gateway (payload v2). The router is the
//! same everywhere; the template decides which routes reach this function.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let config = labeling_lambda::Config::from_env()?;
    let (service, _aws) = labeling_lambda::service(&config).await?;
    labeling_lambda::run_http(&config, labeling_lambda::http_app(service, &config)?).await
}
