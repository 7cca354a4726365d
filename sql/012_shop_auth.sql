-- 012: connecting shops through TikTok's authorization flow, and the
-- lifecycle of their tokens.
--
-- One authorization (a seller's grant to our app: open_id) holds the access
-- and refresh tokens of every shop it covers, so a refresh renews them all
-- at once; shops.authorization_id says which grant a shop's calls use.  A
-- shop without one (inserted by hand, as before this migration) keeps its
-- own shops.access_token, which nothing renews.

CREATE TABLE tiktok_authorizations (
    id                       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    creator_id               uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    app_key                  text        NOT NULL CHECK (char_length(app_key) BETWEEN 1 AND 128),
    open_id                  text        NOT NULL CHECK (char_length(open_id) BETWEEN 1 AND 256),
    seller_name              text        CHECK (char_length(seller_name) <= 255),
    access_token             text        NOT NULL CHECK (char_length(access_token) BETWEEN 1 AND 2048),
    access_token_expires_at  timestamptz NOT NULL,
    refresh_token            text        NOT NULL CHECK (char_length(refresh_token) BETWEEN 1 AND 2048),
    refresh_token_expires_at timestamptz NOT NULL,
    -- Bumped by every renewal: a refresh commits only over the version it
    -- started from, so two daemons never both install a token.
    version                  bigint      NOT NULL DEFAULT 1,
    -- active: renewed before it expires; refused: TikTok would not renew it
    -- (reconnect); revoked: the seller deauthorized the app.
    status                   text        NOT NULL DEFAULT 'active'
                                         CHECK (status IN ('active', 'refused', 'revoked')),
    error                    text,
    refreshed_at             timestamptz,
    -- The refresh lease: one process renews at a time.
    refresh_owner            text,
    refresh_until            timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_key, open_id)
);
COMMENT ON TABLE tiktok_authorizations IS
    'A seller''s grant to the app: the access and refresh tokens of the shops it covers.';
CREATE INDEX tiktok_authorizations_creator_idx ON tiktok_authorizations (creator_id);
CREATE TRIGGER tiktok_authorizations_set_updated_at BEFORE UPDATE ON tiktok_authorizations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE shops
    ADD COLUMN authorization_id uuid REFERENCES tiktok_authorizations (id) ON DELETE SET NULL,
    ADD COLUMN region           text CHECK (char_length(region) <= 16),
    ADD COLUMN connected_at     timestamptz;
CREATE INDEX shops_authorization_idx ON shops (authorization_id) WHERE authorization_id IS NOT NULL;

-- The `state` of an authorization link: single use (the row is deleted when
-- TikTok sends the seller back), bound to its creator, short-lived.  The
-- state also carries an HMAC, so a forged one is refused before this table
-- is read.
CREATE TABLE oauth_states (
    nonce       text        PRIMARY KEY CHECK (char_length(nonce) = 32),
    creator_id  uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE oauth_states IS 'Pending shop authorizations: the single-use state of each link.';
CREATE INDEX oauth_states_expires_idx ON oauth_states (expires_at);

-- Store what TikTok granted: the authorization and its shops, for one
-- creator, all or nothing.  p_auth: {open_id, seller_name, access_token,
-- access_token_expires_at, refresh_token, refresh_token_expires_at} (Unix
-- seconds); p_shops: [{id, name, region, cipher}].  A shop or grant that
-- already belongs to another creator raises OF001 naming it.
CREATE FUNCTION shop_connect(p_creator uuid, p_app_key text, p_app_secret text,
    p_auth jsonb, p_shops jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_auth  uuid;
    v_owner uuid;
    v_shop  jsonb;
    v_out   jsonb := '[]';
    v_row   record;
BEGIN
    -- Two callbacks for the same grant wait for each other.
    PERFORM pg_advisory_xact_lock(hashtext('shop_connect'), hashtext(p_app_key || '/' || (p_auth->>'open_id')));
    SELECT creator_id INTO v_owner FROM tiktok_authorizations
     WHERE app_key = p_app_key AND open_id = p_auth->>'open_id';
    IF FOUND AND v_owner <> p_creator THEN
        RAISE EXCEPTION 'this TikTok seller account is connected to another creator'
            USING ERRCODE = 'OF001';
    END IF;
    FOR v_shop IN SELECT * FROM jsonb_array_elements(p_shops) LOOP
        SELECT creator_id INTO v_owner FROM shops WHERE tiktok_shop_id = v_shop->>'id' FOR UPDATE;
        IF FOUND AND v_owner <> p_creator THEN
            RAISE EXCEPTION 'TikTok shop % is connected to another creator', v_shop->>'id'
                USING ERRCODE = 'OF001';
        END IF;
    END LOOP;
    INSERT INTO tiktok_authorizations AS a (creator_id, app_key, open_id, seller_name,
        access_token, access_token_expires_at, refresh_token, refresh_token_expires_at, refreshed_at)
    VALUES (p_creator, p_app_key, p_auth->>'open_id', p_auth->>'seller_name',
        p_auth->>'access_token', to_timestamp((p_auth->>'access_token_expires_at')::bigint),
        p_auth->>'refresh_token', to_timestamp((p_auth->>'refresh_token_expires_at')::bigint), now())
    ON CONFLICT (app_key, open_id) DO UPDATE SET seller_name = EXCLUDED.seller_name,
        access_token = EXCLUDED.access_token,
        access_token_expires_at = EXCLUDED.access_token_expires_at,
        refresh_token = EXCLUDED.refresh_token,
        refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
        version = a.version + 1, status = 'active', error = NULL, refreshed_at = now(),
        refresh_owner = NULL, refresh_until = NULL
    RETURNING id INTO v_auth;
    FOR v_shop IN SELECT * FROM jsonb_array_elements(p_shops) LOOP
        INSERT INTO shops AS s (creator_id, tiktok_shop_id, shop_cipher, shop_name, region,
            app_key, app_secret, authorization_id, connected_at)
        VALUES (p_creator, v_shop->>'id', v_shop->>'cipher', v_shop->>'name', v_shop->>'region',
            p_app_key, p_app_secret, v_auth, now())
        ON CONFLICT (tiktok_shop_id) DO UPDATE SET shop_cipher = EXCLUDED.shop_cipher,
            shop_name = EXCLUDED.shop_name, region = EXCLUDED.region,
            app_key = EXCLUDED.app_key, app_secret = EXCLUDED.app_secret,
            access_token = NULL, access_token_expires_at = NULL,
            authorization_id = v_auth, status = 'active', paused_reason = NULL,
            connected_at = now()
        RETURNING s.id, s.tiktok_shop_id, s.shop_name, (xmax = 0) AS created INTO v_row;
        INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)
        VALUES (p_creator, 'creator', 'shop.connected', 'shop', v_row.id::text,
            jsonb_build_object('tiktok_shop_id', v_row.tiktok_shop_id, 'authorization_id', v_auth,
                'created', v_row.created));
        v_out := v_out || jsonb_build_object('id', v_row.id, 'tiktok_shop_id', v_row.tiktok_shop_id,
            'name', v_row.shop_name, 'created', v_row.created);
    END LOOP;
    RETURN jsonb_build_object('authorization_id', v_auth, 'shops', v_out);
END $$;
