-- 008: enum values the workflow engine needs.
--
-- In their own migration: a value that ALTER TYPE ... ADD VALUE adds
-- cannot be used in the transaction that adds it, and sql/009 uses them.

-- orders.workflow_status of an order whose workflow was cancelled (and its
-- compensations run).
ALTER TYPE workflow_status ADD VALUE IF NOT EXISTS 'cancelled';

-- order_workflows.workflow_status: parked until an event (wait_kind says
-- which), and undoing what was done (the compensations) before ending.
ALTER TYPE workflow_execution_status ADD VALUE IF NOT EXISTS 'waiting' AFTER 'running';
ALTER TYPE workflow_execution_status ADD VALUE IF NOT EXISTS 'compensating' AFTER 'paused';
