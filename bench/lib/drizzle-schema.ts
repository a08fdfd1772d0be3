import { pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/** The users table as a Drizzle user would declare it (mirrors migrations/…_create_users.ts). */
export const users = pgTable('users', {
  id: uuid('id').primaryKey().defaultRandom(),
  email: text('email').notNull(),
  password_hash: text('password_hash').notNull(),
  name: text('name').notNull(),
  role: text('role').$type<'user' | 'admin'>().notNull().default('user'),
  created_at: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  updated_at: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  last_login_at: timestamp('last_login_at', { withTimezone: true }),
});
