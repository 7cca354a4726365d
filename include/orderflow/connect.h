/*
 * connect: connecting a TikTok shop through TikTok's authorization flow.
 *
 * GET /api/shops/connect (a signed-in creator) makes a single-use state
 * (ttauth, stored in oauth_states) and sends the browser to TikTok's
 * authorization page.  TikTok sends the seller back to
 * GET /oauth/tiktok/callback?code=...&state=...: the state is checked
 * (MAC, expiry, then consumed in the database, so a replay finds nothing),
 * the code is exchanged for tokens (/api/v2/token/get, grant_type
 * authorized_code), Get Authorized Shops names the shops and their
 * ciphers, and shop_connect() stores the authorization and its shops for
 * the creator in one transaction.  Any failure answers a page that says
 * what went wrong, with nothing stored.
 *
 * Called by httpd (the routes) on the request's worker.
 */
#ifndef ORDERFLOW_CONNECT_H
#define ORDERFLOW_CONNECT_H

struct httpd_req;
struct pg_pool;

void connect_prepare(struct pg_pool *pg);
/* GET /api/shops/connect */
void connect_start(struct httpd_req *hr);
/* GET /oauth/tiktok/callback */
void connect_callback(struct httpd_req *hr);

#endif
