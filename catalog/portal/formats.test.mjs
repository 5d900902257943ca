// The portal's side of shared/tests/form_agreement.rs: every case of
// shared/tests/fixtures/forms/agreement.json through the validator a PAO
// portal uses (@rjsf/validator-ajv8 on Ajv2020, with paoFormats), which must
// accept and refuse exactly as the requests API does, naming the same field.
// Run: node --test catalog/portal/ (packages from infra/node_modules).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import { paoFormats } from './formats.mjs';

const require = createRequire(new URL('../../infra/package.json', import.meta.url));
const { customizeValidator } = require('@rjsf/validator-ajv8');
const Ajv2020 = require('ajv/dist/2020').default;
const YAML = require('yaml');

const fixture = JSON.parse(
  readFileSync(new URL('../../shared/tests/fixtures/forms/agreement.json', import.meta.url), 'utf8'),
);
const { schema, uiSchema } = fixture.form;
const validator = customizeValidator({ AjvClass: Ajv2020, customFormats: paoFormats(YAML) });

/** The required field's valid value, with `field` set to `value` (left out when null). */
function submission(field, value) {
  const fields = { string: 'abc' };
  if (value === null) delete fields[field];
  else fields[field] = value;
  return fields;
}

/** The field an AJV error is about, as the server's `FieldError.field`. */
function fieldOf(error) {
  const [, first] = error.instancePath.split('/');
  return first ?? error.params.missingProperty ?? error.params.unevaluatedProperty;
}

test('the form compiles under the portal validator', () => {
  const { validationError } = validator.rawValidation(schema, {});
  assert.equal(validationError, undefined);
});

for (const { field, value, valid, why } of fixture.cases) {
  test(`${field}: ${why}`, () => {
    const data = submission(field, value);
    // What the form shows the user, and blocks submitting on.
    const { errors } = validator.validateFormData(data, schema, undefined, undefined, uiSchema);
    // The same errors, raw, to read which field each names.
    const raw = validator.rawValidation(schema, data).errors ?? [];
    if (valid) {
      assert.deepEqual(errors, [], `accepted by the server, refused here`);
      return;
    }
    assert.ok(errors.length > 0, `refused by the server, accepted here`);
    const named = [...new Set(raw.map(fieldOf))];
    assert.deepEqual(named, [field], `the errors name ${named.join(', ')}, the server ${field}`);
  });
}

test('without paoFormats, json and yaml are only annotations', () => {
  // What a portal gets if it forgets to register them: lenient, never wrong.
  const plain = customizeValidator({ AjvClass: Ajv2020 });
  const warn = console.warn;
  console.warn = () => {};
  try {
    const { errors } = plain.validateFormData(submission('json', '{a: 1}'), schema);
    assert.deepEqual(errors, []);
  } finally {
    console.warn = warn;
  }
});
