/*
 * Unit tests for ship_plan: parcels from SKUs or the creator's default
 * (never a guess), TikTok's address as the carrier's, the rate rules
 * (cheapest, fastest, a carrier and service, a price cap), provider ids,
 * money, and the shipping settings a creator may store.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "orderflow/ship_plan.h"
#include "unit.h"

/* Two SKUs: A (2 units, lines a1 a2) weighs 4 oz and has a size; B (1 unit, b1) has neither. */
#define ITEMS "[{'sku':'A','quantity':2,'line_item_ids':['a1','a2'],'weight_oz':4," \
	"'length_in':6,'width_in':4,'height_in':2}," \
	"{'sku':'B','quantity':1,'line_item_ids':['b1']}]"

static double
dnum(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void
test_parcel_from_skus_default_or_refused(void **state)
{
	json_t *items = unit_json(ITEMS, 0), *lines, *def, *p;
	char why[300];

	(void)state;
	/* Package of A's two units: weighed by the SKU; no size for two units without a default. */
	lines = unit_json("['a1','a2']", 0);
	assert_null(sp_parcel(items, lines, NULL, why, sizeof(why)));
	assert_non_null(strstr(why, "no parcel size"));
	/* With the default's size: 8 oz. */
	def = unit_json("{'length_in':10,'width_in':8,'height_in':4}", 0);
	p = sp_parcel(items, lines, def, why, sizeof(why));
	assert_non_null(p);
	assert_true(dnum(p, "weight") == 8.0 && dnum(p, "length") == 10.0);
	json_decref(p);
	json_decref(lines);
	/* One unit of A: the SKU's own size. */
	lines = unit_json("['a1']", 0);
	p = sp_parcel(items, lines, NULL, why, sizeof(why));
	assert_non_null(p);
	assert_true(dnum(p, "weight") == 4.0 && dnum(p, "length") == 6.0 && dnum(p, "height") == 2.0);
	json_decref(p);
	json_decref(lines);
	/* The whole order: B has no weight, the default has none: refused, naming B. */
	assert_null(sp_parcel(items, NULL, def, why, sizeof(why)));
	assert_non_null(strstr(why, "SKU B"));
	json_decref(def);
	/* A default weight then stands for the whole parcel. */
	def = unit_json("{'weight_oz':20,'length_in':10,'width_in':8,'height_in':4}", 0);
	p = sp_parcel(items, NULL, def, why, sizeof(why));
	assert_true(dnum(p, "weight") == 20.0);
	json_decref(p);
	/* A package holding none of the order's lines. */
	lines = unit_json("['zz']", 0);
	assert_null(sp_parcel(items, lines, def, why, sizeof(why)));
	json_decref(lines);
	json_decref(def);
	/* Too heavy for the carrier. */
	def = unit_json("{'weight_oz':2400,'length_in':1,'width_in':1,'height_in':1}", 0);
	json_decref(items);
	items = unit_json("[{'sku':'H','quantity':3,'line_item_ids':['h1','h2','h3'],'weight_oz':2000}]", 0);
	assert_null(sp_parcel(items, NULL, def, why, sizeof(why)));
	assert_non_null(strstr(why, "more than"));
	json_decref(def);
	json_decref(items);
}

static void
test_address_from_tiktok(void **state)
{
	json_t *addr = unit_json("{'address_line1':'1 Main St','address_line2':'Apt 4',"
	    "'postal_code':'90001','region_code':'US','district_info':[{'level':'Country',"
	    "'name':'United States'},{'level':'State','name':'California'},{'level':'City',"
	    "'name':'Los Angeles'}]}", 0), *a;
	char why[300];

	(void)state;
	a = sp_to_address(addr, "Ann Lee", "(+1)5551234567", NULL, why, sizeof(why));
	assert_non_null(a);
	assert_string_equal(json_string_value(json_object_get(a, "street1")), "1 Main St");
	assert_string_equal(json_string_value(json_object_get(a, "street2")), "Apt 4");
	assert_string_equal(json_string_value(json_object_get(a, "city")), "Los Angeles");
	assert_string_equal(json_string_value(json_object_get(a, "state")), "California");
	assert_string_equal(json_string_value(json_object_get(a, "zip")), "90001");
	assert_string_equal(json_string_value(json_object_get(a, "country")), "US");
	assert_string_equal(json_string_value(json_object_get(a, "name")), "Ann Lee");
	assert_null(json_object_get(a, "email"));
	json_decref(a);
	/* On hold, TikTok blanks the address: refused, not guessed. */
	json_object_del(addr, "address_line1");
	assert_null(sp_to_address(addr, "Ann Lee", NULL, NULL, why, sizeof(why)));
	assert_non_null(strstr(why, "street"));
	json_decref(addr);
}

#define RATES "[{'id':'rate_1','carrier':'USPS','service':'GroundAdvantage','rate':'5.10'," \
	"'delivery_days':5},{'id':'rate_2','carrier':'USPS','service':'Express','rate':'31.00'," \
	"'delivery_days':1},{'id':'rate_3','carrier':'UPS','service':'Ground','rate':'9.80'," \
	"'delivery_days':3},{'id':'rate_4','carrier':'UPS','service':'2ndDayAir','rate':'18.00'," \
	"'delivery_days':2},{'id':'rate_5','carrier':'FedEx','service':'FEDEX_GROUND'," \
	"'rate':'5.10','delivery_days':4},{'id':'bad','carrier':'X','service':'Y','rate':'n/a'}]"

static const char *
pick(json_t *rates, const char *rule)
{
	json_t *r = unit_json(rule, 0);
	char why[300];
	int i = sp_choose_rate(rates, r, why, sizeof(why));

	json_decref(r);
	return i < 0 ? "none" : json_string_value(json_object_get(json_array_get(rates,
	    (size_t)i), "id"));
}

static void
test_rate_rules(void **state)
{
	json_t *rates = unit_json(RATES, 0);

	(void)state;
	/* Cheapest: 5.10 twice, the faster of the two (FedEx, 4 days) wins. */
	assert_string_equal(pick(rates, "{}"), "rate_5");
	assert_string_equal(pick(rates, "{'choose':'cheapest'}"), "rate_5");
	assert_string_equal(pick(rates, "{'choose':'fastest'}"), "rate_2");
	assert_string_equal(pick(rates, "{'choose':'fastest','max_cost':'20.00'}"), "rate_4");
	assert_string_equal(pick(rates, "{'carrier':'ups'}"), "rate_3");
	assert_string_equal(pick(rates, "{'carrier':'UPS','choose':'fastest'}"), "rate_4");
	assert_string_equal(pick(rates, "{'carrier':'USPS','service':'Express'}"), "rate_2");
	assert_string_equal(pick(rates, "{'carrier':'USPS','service':'Express','max_cost':'30'}"),
	    "none");
	assert_string_equal(pick(rates, "{'carrier':'DHL'}"), "none");
	json_decref(rates);
}

static void
test_cents_and_providers(void **state)
{
	json_t *prov = unit_json("[{'id':'711','name':'USPS'},{'id':'712','name':'UPS'}]", 0);

	(void)state;
	assert_int_equal(sp_cents("7.58"), 758);
	assert_int_equal(sp_cents("7.5"), 750);
	assert_int_equal(sp_cents("12"), 1200);
	assert_int_equal(sp_cents("7.58000"), 758);
	assert_int_equal(sp_cents("0.00"), 0);
	assert_int_equal(sp_cents("7.581"), -1);
	assert_int_equal(sp_cents("-1.00"), -1);
	assert_int_equal(sp_cents(".5"), -1);
	assert_int_equal(sp_cents("1e3"), -1);
	assert_int_equal(sp_cents(""), -1);
	assert_int_equal(sp_cents(NULL), -1);
	assert_string_equal(sp_provider_id(prov, "usps"), "711");
	assert_string_equal(sp_provider_id(prov, "UPS"), "712");
	assert_null(sp_provider_id(prov, "FedEx"));
	assert_null(sp_provider_id(prov, NULL));
	json_decref(prov);
}

static const char *
settings(const char *text, char *why, size_t size)
{
	json_t *s = unit_json(text, 0);
	const char *bad = sp_settings_invalid(s, why, size);

	json_decref(s);
	return bad;
}

static void
test_settings_checked_field_by_field(void **state)
{
	char why[300];

	(void)state;
	assert_null(settings("{}", why, sizeof(why)));
	assert_null(settings("{'from_address':{'name':'Shop','street1':'9 Dock Rd','city':'Austin',"
	    "'state':'TX','zip':'73301','country':'US'},'parcel':{'weight_oz':12,'length_in':9,"
	    "'width_in':6,'height_in':3},'rate_rule':{'choose':'fastest','carrier':'UPS',"
	    "'max_cost':'25.00'},'handover_method':'DROP_OFF'}", why, sizeof(why)));
	assert_non_null(settings("{'from_address':{'street1':'9 Dock Rd','city':'Austin',"
	    "'country':'US'}}", why, sizeof(why)));
	assert_string_equal(why, "from_address.zip: required");
	assert_non_null(settings("{'from_address':{'street1':'x','city':'y','zip':'1',"
	    "'country':'US','fax':'1'}}", why, sizeof(why)));
	assert_string_equal(why, "from_address.fax: unknown field");
	assert_non_null(settings("{'parcel':{'weight_oz':0}}", why, sizeof(why)));
	assert_non_null(strstr(why, "parcel.weight_oz"));
	assert_non_null(settings("{'parcel':{'weight_oz':2401}}", why, sizeof(why)));
	assert_non_null(settings("{'parcel':{'depth':1}}", why, sizeof(why)));
	assert_non_null(settings("{'rate_rule':{'choose':'slowest'}}", why, sizeof(why)));
	assert_string_equal(why, "rate_rule.choose: must be cheapest or fastest");
	assert_non_null(settings("{'rate_rule':{'max_cost':'1.234'}}", why, sizeof(why)));
	assert_non_null(settings("{'rate_rule':{'max_cost':12}}", why, sizeof(why)));
	assert_non_null(settings("{'handover_method':'MAIL'}", why, sizeof(why)));
	assert_non_null(settings("{'colour':'red'}", why, sizeof(why)));
	assert_string_equal(why, "colour: unknown field");
	assert_non_null(settings("[]", why, sizeof(why)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parcel_from_skus_default_or_refused),
		cmocka_unit_test(test_address_from_tiktok),
		cmocka_unit_test(test_rate_rules),
		cmocka_unit_test(test_cents_and_providers),
		cmocka_unit_test(test_settings_checked_field_by_field),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
