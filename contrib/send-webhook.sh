#!/bin/sh
# contrib/send-webhook.sh ORDER_ID [STATUS [TYPE]]
#
# Sends one TikTok Shop webhook (order status change by default), signed the
# way TikTok signs them: Authorization = hex HMAC-SHA256(app secret,
# app key + raw body).  For trying a daemon by hand; the defaults match the
# demo shop of contrib/quickstart.sh.
#
#   OF_URL      http://127.0.0.1:8080
#   APP_KEY     demo-app-key
#   APP_SECRET  demo-app-secret
#   SHOP_ID     7495540735365777507
set -eu
[ $# -ge 1 ] || { echo "usage: $0 ORDER_ID [STATUS [TYPE]]" >&2; exit 2; }
order=$1 status=${2:-AWAITING_SHIPMENT} type=${3:-1}
case $order$type in *[!0-9A-Za-z_-]*) echo "$0: ORDER_ID and TYPE: letters, digits, _ and - only" >&2; exit 2;; esac
url=${OF_URL:-http://127.0.0.1:8080}
key=${APP_KEY:-demo-app-key}
secret=${APP_SECRET:-demo-app-secret}
shop=${SHOP_ID:-7495540735365777507}
now=$(date +%s)
body=$(printf '{"type":%s,"tts_notification_id":"demo-%s-%s","shop_id":"%s","timestamp":%s,"data":{"order_id":"%s","order_status":"%s","is_on_hold_order":false,"update_time":%s}}' \
	"$type" "$order" "$now" "$shop" "$now" "$order" "$status" "$now")
sig=$(printf '%s%s' "$key" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
curl -sS -X POST "$url/webhooks/tiktok" -H 'Content-Type: application/json' \
	-H "Authorization: $sig" --data-binary "$body"
echo
