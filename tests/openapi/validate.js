#!/usr/bin/env node
// tests/openapi/validate.js: check an OpenAPI 3.1 document and print TAP.
//
//   node tests/openapi/validate.js contrib/openapi.yaml
//
// 1. YAML: parsed by the `yaml` package, strictly (a duplicate key, which
//    PyYAML would silently merge, is an error, and so is any warning).
// 2. OpenAPI: @readme/openapi-parser validate(), against the official
//    OpenAPI 3.1 schema plus its own checks (path parameters, duplicate
//    operationIds, $refs that resolve, ...).
// 3. JSON Schema: every Schema Object (components.schemas and every inline
//    `schema`) compiled by Ajv as JSON Schema 2020-12, the dialect of
//    OpenAPI 3.1, in strict mode (unknown keywords such as a misspelt
//    `minimun`, bad `type` names, bad regular expressions are errors); and
//    every `examples` entry of a component schema must validate against it.
//
// Prints "1..1" and one "ok 1 - ..." or "not ok 1 - ..." line, with the
// problems as "# " lines after it.  Exit status: 0 valid, 1 not valid,
// 2 usage or missing node_modules (run: npm ci --prefix tests/openapi).
'use strict';

const fs = require('fs');

const MAX_LINES = 200;	// of problems printed; the rest are counted

function bail(status, title, problems) {
	const lines = [...new Set(problems)].flatMap((p) => String(p).split('\n'));
	process.stdout.write('1..1\nnot ok 1 - ' + title + '\n');
	for (const l of lines.slice(0, MAX_LINES))
		process.stdout.write('# ' + l + '\n');
	if (lines.length > MAX_LINES)
		process.stdout.write('# ... and ' + (lines.length - MAX_LINES) + ' more lines\n');
	process.exit(status);
}

if (process.argv.length !== 3)
	bail(2, 'usage: node tests/openapi/validate.js FILE.yaml', []);
const file = process.argv[2];

let YAML, parser, Ajv2020;
try {
	YAML = require('yaml');
	parser = require('@readme/openapi-parser');
	Ajv2020 = require('ajv/dist/2020').default;
} catch (e) {
	bail(2, file + ': validator not installed', [
		'tests/openapi/node_modules is missing or incomplete: run `npm ci --prefix tests/openapi`',
		'(' + e.message.split('\n')[0] + ')']);
}
const versions = ['@readme/openapi-parser', 'ajv', 'yaml'].map((p) =>
	p + ' ' + require(p + '/package.json').version).join(', ');

// ---- 1. YAML

function parseYaml(text) {
	const doc = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true });
	const problems = [...doc.errors, ...doc.warnings].map((e) => 'YAML: ' + e.message);
	return { problems, value: problems.length ? null : doc.toJS({ maxAliasCount: 1000 }) };
}

// ---- 3. JSON Schema

const COMPONENTS = 'urn:orderflow:openapi:components';

// A deep copy of v with #/components/schemas/X refs pointing into the
// components schema Ajv holds.
function rewriteRefs(v) {
	if (Array.isArray(v))
		return v.map(rewriteRefs);
	if (v === null || typeof v !== 'object')
		return v;
	const out = {};
	for (const [k, x] of Object.entries(v)) {
		if (k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/'))
			out[k] = COMPONENTS + '#/$defs/' + x.slice('#/components/schemas/'.length);
		else
			out[k] = rewriteRefs(x);
	}
	return out;
}

// Every inline Schema Object: the value of a `schema` key outside schemas.
function inlineSchemas(v, where, out) {
	if (Array.isArray(v)) {
		v.forEach((x, i) => inlineSchemas(x, where + '/' + i, out));
	} else if (v !== null && typeof v === 'object') {
		for (const [k, x] of Object.entries(v)) {
			const at = where + '/' + k.replace(/~/g, '~0').replace(/\//g, '~1');
			if (at === '#/components/schemas')
				continue;
			if (k === 'schema' && x !== null && typeof x === 'object')
				out.push([at, x]);
			else
				inlineSchemas(x, at, out);
		}
	}
	return out;
}

function ajvMessages(errors) {
	return (errors || []).map((e) => (e.instancePath || '(root)') + ' ' + e.message +
		(e.params && Object.keys(e.params).length ? ' ' + JSON.stringify(e.params) : ''));
}

function checkSchemas(api) {
	const problems = [];
	const ajv = new Ajv2020({
		strict: true,
		allowUnionTypes: true,
		validateFormats: false,	// OpenAPI formats (int32, uuid, ...) are annotations
		allErrors: true,
	});
	// The OpenAPI 3.1 dialect's extra keywords (annotations for a validator).
	ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example']);
	const defs = rewriteRefs((api.components && api.components.schemas) || {});
	try {
		ajv.addSchema({ $id: COMPONENTS, $defs: defs });
	} catch (e) {
		return ['components.schemas: ' + e.message];
	}
	for (const name of Object.keys(defs)) {
		let validate;
		try {
			validate = ajv.getSchema(COMPONENTS + '#/$defs/' + name);
		} catch (e) {
			problems.push('#/components/schemas/' + name + ': ' + e.message);
			continue;
		}
		const examples = defs[name] && Array.isArray(defs[name].examples) ? defs[name].examples : [];
		examples.forEach((ex, i) => {
			if (!validate(ex))
				for (const m of ajvMessages(validate.errors))
					problems.push('#/components/schemas/' + name + '/examples/' + i + ': ' + m);
		});
	}
	for (const [at, schema] of inlineSchemas(api, '#', [])) {
		try {
			ajv.compile(rewriteRefs(schema));
		} catch (e) {
			problems.push(at + ': ' + e.message);
		}
	}
	return problems;
}

// ---- main

async function main() {
	let text;
	try {
		text = fs.readFileSync(file, 'utf8');
	} catch (e) {
		bail(2, file + ': cannot be read', [e.message]);
	}
	const y = parseYaml(text);
	if (y.problems.length)
		bail(1, file + ': not valid YAML', y.problems);
	const api = y.value;
	const problems = [];
	if (typeof api.openapi !== 'string' || !api.openapi.startsWith('3.1.'))
		problems.push('openapi: must be 3.1.x, is ' + JSON.stringify(api.openapi));
	// validate() dereferences what it is given: hand it a copy.
	const result = await parser.validate(structuredClone(api), {
		resolve: { external: false },
		validate: { errors: { colorize: false } },
	});
	if (!result.valid)
		problems.push(parser.compileErrors(result));
	for (const w of result.warnings || [])
		problems.push('warning: ' + w.message);
	problems.push(...checkSchemas(api));
	if (problems.length)
		bail(1, file + ': not a valid OpenAPI 3.1 document (' + versions + ')', problems);
	process.stdout.write('1..1\nok 1 - ' + file + ': valid OpenAPI ' + api.openapi +
		' (' + versions + ')\n');
}

main().catch((e) => bail(1, file + ': the validator failed', [e.stack || e.message]));
