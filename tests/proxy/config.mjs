// Writes the proxy suite's rotor config (JSON, on stdout) for a backend on this port:
//   node tests/proxy/config.mjs <backend port>
const port = process.argv[2];
if (!/^[0-9]+$/.test(port ?? '')) {
  console.error('usage: node tests/proxy/config.mjs <backend port>');
  process.exit(2);
}
const at = (kind) => `http://127.0.0.1:${port}/${kind}`;
const config = {
  token_hmac_secret_key: 'rotor-proxy-test-secret-0123456789abcdef',
  api_key: 'rotor-proxy-test-api-key',
  allowed_origins: ['http://127.0.0.1:*', 'http://localhost:*'],
  http_stream: true,
  sse: true,
  uni_sse: true,
  uni_http_stream: true,
  uni_websocket: true,
  ping_interval: '25s',
  allow_subscribe_for_client: true,
  allow_publish_for_subscriber: true,
  proxy_connect_endpoint: at('connect'),
  proxy_refresh_endpoint: at('refresh'),
  proxy_subscribe_endpoint: at('subscribe'),
  proxy_publish_endpoint: at('publish'),
  proxy_rpc_endpoint: at('rpc'),
  proxy_sub_refresh_endpoint: at('sub_refresh'),
  proxy_http_headers: ['Cookie', 'Authorization', 'X-Real-Ip'],
  proxy_static_http_headers: { 'X-Rotor-Static': 'yes' },
  proxy_include_connection_meta: true,
  namespaces: [{ name: 'px', proxy_subscribe: true, proxy_publish: true, proxy_sub_refresh: true }],
};
process.stdout.write(JSON.stringify(config, null, 2) + '\n');
