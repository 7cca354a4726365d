-- 011: the shop status a disconnected shop keeps.
--
-- In its own migration: a value that ALTER TYPE ... ADD VALUE adds cannot
-- be used in the transaction that adds it, and sql/012 uses it.

-- shops.status of a shop its creator disconnected (DELETE /api/shops/{id}):
-- no token, no sync, its orders kept.
ALTER TYPE shop_status ADD VALUE IF NOT EXISTS 'disconnected';
