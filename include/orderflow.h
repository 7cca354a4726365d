/*
 * orderflow.h: the umbrella header; every module header, in dependency order.
 */
#ifndef ORDERFLOW_H
#define ORDERFLOW_H

#include "orderflow/util.h"
#include "orderflow/log.h"
#include "orderflow/config.h"
#include "orderflow/metrics.h"
#include "orderflow/pg.h"
#include "orderflow/rds.h"
#include "orderflow/service.h"
#include "orderflow/worker.h"
#include "orderflow/httpd.h"
#include "orderflow/health.h"
#include "orderflow/ttsign.h"
#include "orderflow/shops.h"
#include "orderflow/webhook.h"
#include "orderflow/whenv.h"
#include "orderflow/twheel.h"
#include "orderflow/backoff.h"
#include "orderflow/breaker.h"
#include "orderflow/htc.h"
#include "orderflow/tt.h"
#include "orderflow/order.h"
#include "orderflow/apply.h"
#include "orderflow/ostore.h"
#include "orderflow/cache.h"
#include "orderflow/proc.h"
#include "orderflow/poll.h"
#include "orderflow/admin.h"
#include "orderflow/jwt.h"
#include "orderflow/auth.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rest.h"
#include "orderflow/rest_orders.h"
#include "orderflow/rest_bulk.h"
#include "orderflow/migrate.h"
#include "orderflow/sysd.h"

#endif
