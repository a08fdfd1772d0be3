import { defineCases } from './cases.ts';

defineCases('first half', 120);
